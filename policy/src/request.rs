//! Shape checks on an incoming task request, before any policy decision:
//! sizes, character sets, and a normalized absolute program path. Names that
//! become paths or user names are ASCII-only (`is_ascii_*`, never
//! `is_alphanumeric`, which lets Unicode through).

/// Largest stdin a request may carry, in bytes.
pub const MAX_STDIN_BYTES: usize = 1 << 20;
/// Largest single argument or environment value, in bytes.
pub const MAX_ARG_BYTES: usize = 128 << 10;
/// Largest total of arguments and environment, in bytes, counting a NUL after
/// each string and the `=` of each variable, as `execve` does.
pub const MAX_ARGS_TOTAL_BYTES: usize = 1 << 20;
/// Most arguments a request may carry.
pub const MAX_ARGS: usize = 4096;
/// Longest program path, in bytes (`PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest environment variable name.
pub const MAX_ENV_NAME_BYTES: usize = 128;
/// Most groups a request may name (each is at most 64 bytes, and is
/// written into two audit records and kept with the task).
pub const MAX_GROUPS: usize = 256;

/// The parts of a task request that are checked before the policy decides.
#[derive(Debug, Clone, Copy)]
pub struct RequestShape<'a> {
    /// Caller-chosen task id; `""` lets Airlock pick one.
    pub task_id: &'a str,
    /// The user the task runs for.
    pub user: &'a str,
    /// That user's groups.
    pub groups: &'a [String],
    /// Absolute path of the program.
    pub program: &'a str,
    /// Arguments after the program name.
    pub args: &'a [String],
    /// Extra environment variables.
    pub env: &'a [(String, String)],
    /// Length of stdin in bytes.
    pub stdin_len: usize,
}

/// Why a request is malformed. Values are clipped to 64 characters.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The task id has the wrong characters or length.
    #[error(
        "task id {value:?} is invalid: use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.'"
    )]
    TaskId {
        /// The id given.
        value: String,
    },
    /// The user name is not a portable Unix user name.
    #[error("user {value:?} is invalid: use a lower-case ASCII letter or _ then up to 63 of a-z 0-9 _ . -")]
    User {
        /// The name given.
        value: String,
    },
    /// A group name is not a portable Unix group name.
    #[error("group {index} {value:?} is invalid: use a lower-case ASCII letter or _ then up to 63 of a-z 0-9 _ . -")]
    Group {
        /// Position in `groups`, from 0.
        index: usize,
        /// The name given.
        value: String,
    },
    /// Too many groups.
    #[error("{count} groups named: at most {MAX_GROUPS} are allowed")]
    TooManyGroups {
        /// How many were named.
        count: usize,
    },
    /// No program was named.
    #[error("program is empty: name an absolute path such as /usr/bin/python3")]
    ProgramEmpty,
    /// The program path does not start with `/`.
    #[error("program {value:?} is relative: name an absolute path such as /usr/bin/python3")]
    ProgramRelative {
        /// The path given.
        value: String,
    },
    /// The program path contains a NUL byte.
    #[error("program {value:?} contains a NUL byte")]
    ProgramNul {
        /// The path given.
        value: String,
    },
    /// The program path has `.`, `..`, `//` or a trailing `/`.
    #[error("program {value:?} is not normalized: write it without '.' or '..' components, '//' or a trailing '/'")]
    ProgramNotNormalized {
        /// The path given.
        value: String,
    },
    /// The program path is too long.
    #[error("program path is {len} bytes long: at most 4096 are allowed")]
    ProgramTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Too many arguments.
    #[error("{count} arguments given: at most 4096 are allowed")]
    TooManyArgs {
        /// How many were given.
        count: usize,
    },
    /// An argument contains a NUL byte.
    #[error("argument {index} contains a NUL byte")]
    ArgNul {
        /// Position in `args`, from 0.
        index: usize,
    },
    /// An argument is too long.
    #[error("argument {index} is {len} bytes long: at most 131072 are allowed")]
    ArgTooLong {
        /// Position in `args`, from 0.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// Arguments and environment together are too large.
    #[error("arguments and environment take {total} bytes: at most 1048576 are allowed")]
    ArgsTooLarge {
        /// Their total size, counted as `execve` does.
        total: usize,
    },
    /// An environment variable name has the wrong characters or length.
    #[error("env name {name:?} is invalid: use A-Z a-z 0-9 _, not starting with a digit, at most 128 bytes")]
    EnvName {
        /// The name given.
        name: String,
    },
    /// An environment variable is one Airlock sets itself.
    #[error("env {name} is reserved: Airlock sets {reserved} itself")]
    EnvReserved {
        /// The name given.
        name: String,
        /// The reserved name or prefix it matched, e.g. `AWS_*`.
        reserved: &'static str,
    },
    /// The same environment variable is given twice.
    #[error("env {name} is given twice: give each variable once")]
    EnvDuplicate {
        /// The name given.
        name: String,
    },
    /// An environment value contains a NUL byte.
    #[error("env {name} contains a NUL byte in its value")]
    EnvNul {
        /// The variable's name.
        name: String,
    },
    /// An environment value is too long.
    #[error("env {name} is {len} bytes long: at most 131072 are allowed")]
    EnvTooLong {
        /// The variable's name.
        name: String,
        /// Length of its value in bytes.
        len: usize,
    },
    /// stdin is too large.
    #[error("stdin is {len} bytes long: at most 1048576 are allowed")]
    StdinTooLarge {
        /// Its length in bytes.
        len: usize,
    },
}

/// Environment names Airlock sets in every task, with the pattern shown to users.
const RESERVED_ENV: [(&str, &str); 5] = [
    ("PATH", "PATH"),
    ("HOME", "HOME"),
    ("TMPDIR", "TMPDIR"),
    ("USER", "USER"),
    ("LOGNAME", "LOGNAME"),
];
/// Environment prefixes Airlock owns: the loader's and the AWS credentials'.
const RESERVED_ENV_PREFIXES: [(&str, &str); 2] = [("LD_", "LD_*"), ("AWS_", "AWS_*")];

/// Checks a request's shape; the first problem found is returned.
pub fn validate_request(req: &RequestShape<'_>) -> Result<(), RequestError> {
    if !req.task_id.is_empty() && !is_task_id(req.task_id) {
        return Err(RequestError::TaskId {
            value: clip(req.task_id),
        });
    }
    if !is_user_name(req.user) {
        return Err(RequestError::User {
            value: clip(req.user),
        });
    }
    if req.groups.len() > MAX_GROUPS {
        return Err(RequestError::TooManyGroups {
            count: req.groups.len(),
        });
    }
    if let Some((index, group)) = req
        .groups
        .iter()
        .enumerate()
        .find(|(_, g)| !is_user_name(g))
    {
        return Err(RequestError::Group {
            index,
            value: clip(group),
        });
    }
    check_abs_path(req.program).map_err(|problem| {
        let value = clip(req.program);
        match problem {
            PathProblem::Empty => RequestError::ProgramEmpty,
            PathProblem::TooLong => RequestError::ProgramTooLong {
                len: req.program.len(),
            },
            PathProblem::Nul => RequestError::ProgramNul { value },
            PathProblem::Relative => RequestError::ProgramRelative { value },
            PathProblem::NotNormalized => RequestError::ProgramNotNormalized { value },
        }
    })?;
    if req.args.len() > MAX_ARGS {
        return Err(RequestError::TooManyArgs {
            count: req.args.len(),
        });
    }
    for (index, arg) in req.args.iter().enumerate() {
        if arg.contains('\0') {
            return Err(RequestError::ArgNul { index });
        }
        if arg.len() > MAX_ARG_BYTES {
            return Err(RequestError::ArgTooLong {
                index,
                len: arg.len(),
            });
        }
    }
    let total = req.args.iter().map(|a| a.len() + 1).sum::<usize>()
        + req
            .env
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum::<usize>();
    if total > MAX_ARGS_TOTAL_BYTES {
        return Err(RequestError::ArgsTooLarge { total });
    }
    // Linear: 1 MiB of environment is 200,000 short names, which a
    // comparison of each with every earlier one took 45 s of CPU over.
    let mut names = std::collections::HashSet::with_capacity(req.env.len());
    for (name, value) in req.env {
        check_env(name, value)?;
        if !names.insert(name.as_str()) {
            return Err(RequestError::EnvDuplicate { name: name.clone() });
        }
    }
    if req.stdin_len > MAX_STDIN_BYTES {
        return Err(RequestError::StdinTooLarge { len: req.stdin_len });
    }
    Ok(())
}

fn check_env(name: &str, value: &str) -> Result<(), RequestError> {
    let mut chars = name.bytes();
    let well_formed = name.len() <= MAX_ENV_NAME_BYTES
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !well_formed {
        return Err(RequestError::EnvName { name: clip(name) });
    }
    let exact = RESERVED_ENV.iter().find(|(n, _)| *n == name);
    let prefix = RESERVED_ENV_PREFIXES
        .iter()
        .find(|(p, _)| name.starts_with(p));
    if let Some((_, reserved)) = exact.or(prefix) {
        return Err(RequestError::EnvReserved {
            name: name.to_owned(),
            reserved,
        });
    }
    if value.contains('\0') {
        return Err(RequestError::EnvNul {
            name: name.to_owned(),
        });
    }
    if value.len() > MAX_ARG_BYTES {
        return Err(RequestError::EnvTooLong {
            name: name.to_owned(),
            len: value.len(),
        });
    }
    Ok(())
}

/// `[A-Za-z0-9._-]{1,64}`, not starting with `.` (so never `.` or `..`).
fn is_task_id(s: &str) -> bool {
    is_cluster_name(s) && !s.starts_with('.')
}

/// `[A-Za-z0-9._-]{1,64}`.
pub(crate) fn is_cluster_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// `[a-z_][a-z0-9_.-]{0,63}`: a user or group name on any Unix.
pub(crate) fn is_user_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= 64
        && bytes
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && bytes.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(&c))
}

/// What is wrong with a path that should be absolute and normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathProblem {
    Empty,
    TooLong,
    Nul,
    Relative,
    NotNormalized,
}

impl PathProblem {
    /// Completes "<path> ..." in a policy error message.
    pub(crate) fn explain(self) -> &'static str {
        match self {
            PathProblem::Empty => "is empty: write an absolute path",
            PathProblem::TooLong => "is longer than 4096 bytes",
            PathProblem::Nul => "contains a NUL byte",
            PathProblem::Relative => "is relative: write an absolute path starting with /",
            PathProblem::NotNormalized => {
                "is not normalized: write it without '.' or '..' components, '//' or a trailing '/'"
            }
        }
    }
}

/// Accepts `/` and absolute paths without `.`/`..` components, `//` or a
/// trailing `/`, so that equal paths are equal strings.
pub(crate) fn check_abs_path(p: &str) -> Result<(), PathProblem> {
    if p.is_empty() {
        Err(PathProblem::Empty)
    } else if p.len() > MAX_PATH_BYTES {
        Err(PathProblem::TooLong)
    } else if p.contains('\0') {
        Err(PathProblem::Nul)
    } else if !p.starts_with('/') {
        Err(PathProblem::Relative)
    } else if p != "/"
        && p[1..]
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        Err(PathProblem::NotNormalized)
    } else {
        Ok(())
    }
}

/// A value safe to echo in a message: at most 64 characters, then `…`.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}
