//! Compiles the seccomp profile (seccompiler's JSON format) to classic BPF
//! as a binary search tree over the syscall number.
//!
//! Why not seccompiler's own output: it tests the rules one after another,
//! so the `task` allowlist (212 syscalls) became ~1,075 instructions, run
//! in full for late syscalls. Worse, when a filter is installed the kernel
//! emulates it once for every syscall number to find the ones it may skip
//! (its constant-action bitmap), which made installing the profile cost
//! about half a millisecond per task. As a tree, the same allowlist is ~110
//! instructions (one comparison per node, one shared return per verdict)
//! and any syscall is decided in about eight comparisons.
//!
//! Semantics are seccompiler's, and a test runs both compilers' programs
//! through a BPF interpreter over every syscall number and a set of
//! arguments: a syscall with no rule gets `mismatch_action`; a rule with no
//! conditions, or whose conditions all hold, gets `match_action`; rules of
//! one syscall are alternatives. Other architectures are killed, and x32
//! syscall numbers (bit 30 set) get `EPERM`, like any syscall not listed.

mod merge;
mod syscalls;

pub use merge::merge;

use std::collections::BTreeMap;

use serde::Deserialize;

/// A BPF instruction (`struct sock_filter`).
pub type Insn = seccompiler::sock_filter;

/// Errors in the profile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The JSON does not parse.
    #[error("seccomp profile is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A syscall name without a number.
    #[error("seccomp profile names syscall {0:?}, which executor/src/seccomp_bpf/syscalls.rs does not know: add it there")]
    UnknownSyscall(String),
    /// A condition the compiler does not support.
    #[error("seccomp profile: syscall {syscall}: {detail}")]
    Condition {
        /// The syscall.
        syscall: String,
        /// What is wrong.
        detail: String,
    },
    /// A jump too far for classic BPF (cannot happen with small rules).
    #[error("seccomp program: a conditional jump spans more than 255 instructions")]
    JumpTooFar,
    /// Filters merged into one program would be longer than the kernel takes.
    #[error("seccomp program: the merged filters are longer than 4096 instructions")]
    TooLong,
    /// A filter that [`merge`] cannot copy.
    #[error("seccomp program: cannot merge a filter: {0}")]
    Merge(String),
}

/// One filter of the profile, as the JSON has it.
#[derive(Debug, Deserialize)]
struct FilterJson {
    mismatch_action: ActionJson,
    match_action: ActionJson,
    filter: Vec<RuleJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    syscall: String,
    #[serde(default)]
    args: Vec<CondJson>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct CondJson {
    index: u8,
    #[serde(rename = "type")]
    kind: ArgLen,
    op: OpJson,
    val: u64,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ArgLen {
    Dword,
    Qword,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum OpJson {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq(u64),
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum ActionJson {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Log,
    Trap,
    Trace(u32),
}

impl ActionJson {
    fn ret(self) -> u32 {
        match self {
            Self::Allow => libc::SECCOMP_RET_ALLOW,
            Self::Errno(e) => libc::SECCOMP_RET_ERRNO | (e & libc::SECCOMP_RET_DATA),
            Self::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Self::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Self::Log => libc::SECCOMP_RET_LOG,
            Self::Trap => libc::SECCOMP_RET_TRAP,
            Self::Trace(d) => libc::SECCOMP_RET_TRACE | (d & libc::SECCOMP_RET_DATA),
        }
    }
}

/// Compiles every filter of a profile: name → program.
pub fn compile_profile(json: &str) -> Result<BTreeMap<String, Vec<Insn>>, CompileError> {
    let filters: BTreeMap<String, FilterJson> = serde_json::from_str(json)?;
    filters
        .into_iter()
        .map(|(name, f)| compile_filter(&f).map(|p| (name, p)))
        .collect()
}

/// What a syscall number leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// A fixed return value.
    Ret(u32),
    /// Rules with conditions: (conditions of each alternative).
    Rules(Vec<Vec<CondJson>>),
}

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// AUDIT_ARCH_X86_64 (linux/audit.h): EM_X86_64 | 64-bit | little-endian.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

fn compile_filter(f: &FilterJson) -> Result<Vec<Insn>, CompileError> {
    let (matched, mismatch) = (f.match_action.ret(), f.mismatch_action.ret());
    let leaves = segments_of(f)?
        .into_iter()
        .map(|(start, verdict)| Ok((start, leaf_of(&verdict, matched, mismatch)?)))
        .collect::<Result<Vec<_>, CompileError>>()?;
    assemble_tree(&leaves)
}

/// Compiles the named filters of a profile into one program that decides
/// every syscall as the kernel does for them installed one after another,
/// in this order (see [`merge`]): a syscall that every filter decides
/// without looking at its arguments gets the kernel's verdict of theirs
/// in the tree's leaf; only for the few that some filter decides by their
/// arguments is a leaf the merged code of each filter's rules. One program
/// about as long as the longest filter, instead of one per filter.
pub fn compile_set(json: &str, names: &[&str]) -> Result<Vec<Insn>, CompileError> {
    let filters: BTreeMap<String, FilterJson> = serde_json::from_str(json)?;
    let parts = names
        .iter()
        .map(|name| {
            let f = filters
                .get(*name)
                .ok_or_else(|| CompileError::Merge(format!("no filter named {name}")))?;
            Ok((
                f.match_action.ret(),
                f.mismatch_action.ret(),
                segments_of(f)?,
            ))
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    let starts: std::collections::BTreeSet<u32> = parts
        .iter()
        .flat_map(|(_, _, segments)| segments.iter().map(|(start, _)| *start))
        .collect();
    let mut leaves: Vec<(u32, Leaf)> = Vec::new();
    for start in starts {
        // Each filter's verdict from `start` to the next start.
        let verdicts: Vec<(u32, u32, &Verdict)> = parts
            .iter()
            .map(|(matched, mismatch, segments)| {
                let at = segments.partition_point(|(s, _)| *s <= start) - 1;
                (*matched, *mismatch, &segments[at].1)
            })
            .collect();
        let rets: Option<Vec<u32>> = verdicts
            .iter()
            .map(|(_, _, verdict)| match verdict {
                Verdict::Ret(ret) => Some(*ret),
                Verdict::Rules(_) => None,
            })
            .collect();
        let leaf = match rets {
            Some(rets) => Leaf::Ret(merge::installed_verdict(&rets)),
            None => {
                let codes = verdicts
                    .iter()
                    .map(|(matched, mismatch, verdict)| {
                        match leaf_of(verdict, *matched, *mismatch)? {
                            Leaf::Ret(ret) => Ok(vec![ret_insn(ret)]),
                            Leaf::Code(code) => Ok(code),
                        }
                    })
                    .collect::<Result<Vec<_>, CompileError>>()?;
                let codes: Vec<&[Insn]> = codes.iter().map(Vec::as_slice).collect();
                Leaf::Code(merge(&codes)?)
            }
        };
        match leaves.last() {
            Some((_, last)) if *last == leaf && matches!(leaf, Leaf::Ret(_)) => {}
            _ => leaves.push((start, leaf)),
        }
    }
    assemble_tree(&leaves)
}

/// One filter's segments [start, next start) of the syscall numbers, each
/// with one verdict; neighbours with the same fixed verdict merged.
fn segments_of(f: &FilterJson) -> Result<Vec<(u32, Verdict)>, CompileError> {
    let matched = f.match_action.ret();
    let mismatch = f.mismatch_action.ret();
    // syscall number → its alternatives (None: an unconditional rule).
    let mut by_nr: BTreeMap<u32, Verdict> = BTreeMap::new();
    for rule in &f.filter {
        let nr = syscall_nr(&rule.syscall)?;
        for c in &rule.args {
            if c.index > 5 {
                return Err(CompileError::Condition {
                    syscall: rule.syscall.clone(),
                    detail: format!("argument index {} (0 to 5)", c.index),
                });
            }
        }
        let entry = by_nr.entry(nr).or_insert(Verdict::Rules(Vec::new()));
        if rule.args.is_empty() {
            // Matched unconditionally: other alternatives do not matter.
            *entry = Verdict::Ret(matched);
        } else if let Verdict::Rules(alts) = entry {
            alts.push(rule.args.clone());
        }
    }
    let mut segments: Vec<(u32, Verdict)> = vec![(0, Verdict::Ret(mismatch))];
    for (nr, verdict) in by_nr {
        push_segment(&mut segments, nr, verdict);
        push_segment(&mut segments, nr + 1, Verdict::Ret(mismatch));
    }
    Ok(segments)
}

/// What a leaf of the tree does: return, or run code of its own (rules on
/// the arguments; its jumps stay inside it and every path returns).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    Ret(u32),
    Code(Vec<Insn>),
}

fn ret_insn(ret: u32) -> Insn {
    Insn {
        code: BPF_RET | BPF_K,
        jt: 0,
        jf: 0,
        k: ret,
    }
}

fn leaf_of(verdict: &Verdict, matched: u32, mismatch: u32) -> Result<Leaf, CompileError> {
    Ok(match verdict {
        Verdict::Ret(ret) => Leaf::Ret(*ret),
        Verdict::Rules(alts) => {
            let mut asm = Asm::default();
            rules(&mut asm, alts, matched, mismatch);
            Leaf::Code(asm.assemble()?)
        }
    })
}

/// The tree over `leaves`: compact when its jumps reach, spread otherwise.
fn assemble_tree(leaves: &[(u32, Leaf)]) -> Result<Vec<Insn>, CompileError> {
    match compact(leaves) {
        Err(CompileError::JumpTooFar) => spread(leaves),
        other => other,
    }
}

/// The program as a tree whose nodes are one comparison each, jumping
/// straight to their subtrees and to one shared instruction per return
/// value, placed last: about a third of [`spread`]'s instructions. The
/// kernel's cost to install a filter (conversion, JIT, the cache emulation)
/// grows with its length. Fails with `JumpTooFar` when a conditional jump
/// would span more than 255 instructions (a profile several times larger
/// than ours).
fn compact(segments: &[(u32, Leaf)]) -> Result<Vec<Insn>, CompileError> {
    let mut asm = Asm::default();
    let mut returns = BTreeMap::new();
    asm.stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH);
    let kill = shared_return(&mut asm, &mut returns, libc::SECCOMP_RET_KILL_PROCESS);
    asm.jump(BPF_JEQ, AUDIT_ARCH_X86_64, Target::Next, kill);
    asm.stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR);
    let x32 = shared_return(
        &mut asm,
        &mut returns,
        libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    );
    asm.jump(BPF_JGE, X32_SYSCALL_BIT, x32, Target::Next);
    compact_tree(&mut asm, &mut returns, segments);
    for (ret, label) in returns {
        asm.bind(label);
        asm.stmt(BPF_RET | BPF_K, ret);
    }
    asm.assemble()
}

/// The shared return of `ret`.
fn shared_return(asm: &mut Asm, returns: &mut BTreeMap<u32, Label>, ret: u32) -> Target {
    Target::Label(*returns.entry(ret).or_insert_with(|| asm.label()))
}

/// Emits the search over `segments` (the accumulator holds the number):
/// a node jumps to its right half when the number is at least the half's
/// first, and falls to its left half; a half that is one return is that
/// shared return.
fn compact_tree(asm: &mut Asm, returns: &mut BTreeMap<u32, Label>, segments: &[(u32, Leaf)]) {
    if let [(_, leaf)] = segments {
        asm.leaf(leaf);
        return;
    }
    let (left, right) = segments.split_at(segments.len() / 2);
    let mut half = |asm: &mut Asm, half: &[(u32, Leaf)]| match half {
        [(_, Leaf::Ret(ret))] => (shared_return(asm, returns, *ret), None),
        _ => {
            let label = asm.label();
            (Target::Label(label), Some(label))
        }
    };
    let (to_right, right_code) = half(asm, right);
    let (to_left, left_code) = half(asm, left);
    let to_left = if left_code.is_some() {
        Target::Next
    } else {
        to_left
    };
    asm.jump(BPF_JGE, right[0].0, to_right, to_left);
    if let Some(label) = left_code {
        asm.bind(label);
        compact_tree(asm, returns, left);
    }
    if let Some(label) = right_code {
        asm.bind(label);
        compact_tree(asm, returns, right);
    }
}

/// The program as a tree of two instructions per node (a comparison and a
/// jump of any length) and a return per leaf: no conditional jump spans
/// more than a leaf's rules.
fn spread(segments: &[(u32, Leaf)]) -> Result<Vec<Insn>, CompileError> {
    let mut asm = Asm::default();
    asm.stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH);
    asm.jump(BPF_JEQ, AUDIT_ARCH_X86_64, Target::Skip1, Target::Next);
    asm.stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS);
    asm.stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR);
    asm.jump(BPF_JGE, X32_SYSCALL_BIT, Target::Next, Target::Skip1);
    asm.stmt(
        BPF_RET | BPF_K,
        libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    );
    tree(&mut asm, segments);
    asm.assemble()
}

fn push_segment(segments: &mut Vec<(u32, Verdict)>, start: u32, verdict: Verdict) {
    let Some(last) = segments.last_mut() else {
        segments.push((start, verdict));
        return;
    };
    if last.0 == start {
        last.1 = verdict;
    } else if last.1 != verdict || matches!(verdict, Verdict::Rules(_)) {
        segments.push((start, verdict));
    }
    // Merge with the one before if the replacement made them equal.
    let n = segments.len();
    if n >= 2
        && segments[n - 2].1 == segments[n - 1].1
        && matches!(segments[n - 1].1, Verdict::Ret(_))
    {
        segments.pop();
    }
}

/// Emits the search over `segments` (the accumulator holds the number).
fn tree(asm: &mut Asm, segments: &[(u32, Leaf)]) {
    if let [(_, leaf)] = segments {
        asm.leaf(leaf);
        return;
    }
    let mid = segments.len() / 2;
    let right = asm.label();
    // A >= first number of the right half: go right.
    asm.jump(BPF_JGE, segments[mid].0, Target::Next, Target::Skip1);
    asm.ja(right);
    tree(asm, &segments[..mid]);
    asm.bind(right);
    tree(asm, &segments[mid..]);
}

/// Emits alternatives of conditions; falls to `mismatch` when none holds.
fn rules(asm: &mut Asm, alts: &[Vec<CondJson>], matched: u32, mismatch: u32) {
    for conds in alts {
        let next = asm.label();
        for c in conds {
            cond(asm, c, next);
        }
        asm.stmt(BPF_RET | BPF_K, matched);
        asm.bind(next);
    }
    asm.stmt(BPF_RET | BPF_K, mismatch);
}

/// Emits one condition: falls through when it holds, jumps to `fail` when
/// it does not.
fn cond(asm: &mut Asm, c: &CondJson, fail: Label) {
    let lo_off = OFF_ARGS + 8 * u32::from(c.index);
    let hi_off = lo_off + 4;
    let (val_hi, val_lo) = ((c.val >> 32) as u32, c.val as u32);
    let qword = c.kind == ArgLen::Qword;
    let ok = asm.label();
    match c.op {
        OpJson::Eq | OpJson::MaskedEq(_) => {
            let mask = match c.op {
                OpJson::MaskedEq(m) => Some(m),
                _ => None,
            };
            if qword {
                asm.stmt(BPF_LD | BPF_W | BPF_ABS, hi_off);
                if let Some(m) = mask {
                    asm.stmt(BPF_ALU | BPF_AND | BPF_K, (m >> 32) as u32);
                }
                asm.jump(BPF_JEQ, val_hi, Target::Next, Target::Label(fail));
            }
            asm.stmt(BPF_LD | BPF_W | BPF_ABS, lo_off);
            if let Some(m) = mask {
                asm.stmt(BPF_ALU | BPF_AND | BPF_K, m as u32);
            }
            asm.jump(BPF_JEQ, val_lo, Target::Next, Target::Label(fail));
        }
        OpJson::Ne => {
            if qword {
                asm.stmt(BPF_LD | BPF_W | BPF_ABS, hi_off);
                asm.jump(BPF_JEQ, val_hi, Target::Next, Target::Label(ok));
            }
            asm.stmt(BPF_LD | BPF_W | BPF_ABS, lo_off);
            asm.jump(BPF_JEQ, val_lo, Target::Label(fail), Target::Next);
        }
        OpJson::Gt | OpJson::Ge | OpJson::Lt | OpJson::Le => {
            // Unsigned comparison; for a qword the high halves decide
            // unless they are equal. Lt/Le are the negations of Ge/Gt.
            let (jmp, negate) = match c.op {
                OpJson::Gt => (BPF_JGT, false),
                OpJson::Ge => (BPF_JGE, false),
                OpJson::Lt => (BPF_JGE, true),
                _ => (BPF_JGT, true),
            };
            let (holds, fails) = if negate {
                (Target::Label(fail), Target::Label(ok))
            } else {
                (Target::Label(ok), Target::Label(fail))
            };
            if qword {
                asm.stmt(BPF_LD | BPF_W | BPF_ABS, hi_off);
                asm.jump(BPF_JGT, val_hi, holds, Target::Next);
                asm.jump(BPF_JEQ, val_hi, Target::Next, fails);
            }
            asm.stmt(BPF_LD | BPF_W | BPF_ABS, lo_off);
            asm.jump(jmp, val_lo, holds, fails);
        }
    }
    asm.bind(ok);
}

fn syscall_nr(name: &str) -> Result<u32, CompileError> {
    syscalls::SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr as u32)
        .ok_or_else(|| CompileError::UnknownSyscall(name.to_string()))
}

const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_K: u16 = 0x00;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;

/// A position in the program, bound later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Target {
    /// The next instruction.
    Next,
    /// The instruction after the next one.
    Skip1,
    Label(Label),
}

#[derive(Debug)]
enum Item {
    Stmt(u16, u32),
    /// An instruction whose jumps are relative to its own block.
    Raw(Insn),
    Jump(u16, u32, Target, Target),
    Ja(Label),
    Bind(Label),
}

/// A tiny assembler: instructions with symbolic jump targets.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.items.push(Item::Stmt(code, k));
    }
    fn jump(&mut self, op: u16, k: u32, jt: Target, jf: Target) {
        self.items.push(Item::Jump(BPF_JMP | op | BPF_K, k, jt, jf));
    }
    fn ja(&mut self, to: Label) {
        self.items.push(Item::Ja(to));
    }
    fn bind(&mut self, label: Label) {
        self.items.push(Item::Bind(label));
    }
    fn leaf(&mut self, leaf: &Leaf) {
        match leaf {
            Leaf::Ret(ret) => self.stmt(BPF_RET | BPF_K, *ret),
            Leaf::Code(code) => self
                .items
                .extend(code.iter().map(|insn| Item::Raw(insn.clone()))),
        }
    }

    fn assemble(self) -> Result<Vec<Insn>, CompileError> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for item in &self.items {
            match item {
                Item::Bind(l) => at[l.0] = pc,
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for item in &self.items {
            let pc = out.len();
            let offset = |t: Target| -> Result<u8, CompileError> {
                let to = match t {
                    Target::Next => pc + 1,
                    Target::Skip1 => pc + 2,
                    Target::Label(l) => at[l.0],
                };
                u8::try_from(to - pc - 1).map_err(|_| CompileError::JumpTooFar)
            };
            out.push(match *item {
                Item::Bind(_) => continue,
                Item::Raw(ref insn) => insn.clone(),
                Item::Stmt(code, k) => Insn {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Item::Jump(code, k, jt, jf) => Insn {
                    code,
                    jt: offset(jt)?,
                    jf: offset(jf)?,
                    k,
                },
                Item::Ja(l) => Insn {
                    code: BPF_JMP | BPF_JA,
                    jt: 0,
                    jf: 0,
                    k: (at[l.0] - pc - 1) as u32,
                },
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
