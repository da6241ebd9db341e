//! Only allowlisted programs run: python3 is allowed, /usr/bin/id is not,
//! and no route to it works.

use crate::harness::*;

/// Tenant code that tries every route to run `id`; prints a JSON map from
/// route to outcome. `id`'s own output would contain "uid=".
const EXEC_ATTACKS: &str = r#"
import ctypes, json, os, shutil, subprocess, sys
def run(argv):
    try:
        p = subprocess.run(argv, capture_output=True, timeout=10)
        out = (p.stdout + p.stderr).decode(errors="replace")
        return "ESCAPED: " + out[:60] if "uid=" in out else "exit %d" % p.returncode
    except Exception as e:
        return type(e).__name__
r = {}
r["direct"] = run(["/usr/bin/id"])
# In the task's root, but not allowlisted: glibc's libc.so.6 is an ELF
# program (it prints its version) on an exec mount that DAC lets anyone run.
r["direct_in_root"] = run(["/usr/lib/x86_64-linux-gnu/libc.so.6"])
r["os_system"] = "ESCAPED" if os.system("/usr/bin/id > sys_out 2>&1") == 0 and "uid=" in open("sys_out").read() else "blocked"
data = sys.stdin.buffer.read()
for place in (".", "/tmp", "/dev/shm"):
    path = os.path.join(place, "id-copy")
    open(path, "wb").write(data)
    os.chmod(path, 0o755)
    r["copy_in_" + place] = run([path])
os.symlink("/usr/bin/id", "id-link")
r["symlink"] = run(["./id-link"])
try:
    os.link("/usr/bin/id", "id-hardlink")
    r["hardlink"] = run(["./id-hardlink"])
except Exception as e:
    r["hardlink"] = type(e).__name__
try:
    fd = os.memfd_create("x")
    os.write(fd, data)
    r["memfd"] = run(["/proc/self/fd/%d" % fd])
except Exception as e:
    r["memfd"] = type(e).__name__
loader = [l for l in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1") if os.path.exists(l)][0]
r["loader_on_id"] = run([loader, "/usr/bin/id"])
r["loader_on_copy"] = run([loader, "./id-copy"])
# A program under /usr/lib outside the read-only library dirs: apt's http
# method prints "Capabilities" when it runs.
p = subprocess.run([loader, "/usr/lib/apt/methods/http"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
out = (p.stdout + p.stderr).decode(errors="replace")
r["loader_on_lib_program"] = "ESCAPED: " + out[:60] if "Capabilities" in out else "exit %d" % p.returncode
import mmap
with open("id-copy", "rb") as f:
    try:
        mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC)
        r["mmap_exec_scratch"] = "ESCAPED"
    except Exception as e:
        r["mmap_exec_scratch"] = type(e).__name__
r["allowlisted_python"] = run([sys.executable, "-c", "print('uid=' if False else 'python ok')"])
print(json.dumps(r))
"#;

#[tokio::test]
async fn only_allowlisted_programs_execute_by_any_route() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    let mut req = python("alice", EXEC_ATTACKS);
    req.stdin = std::fs::read("/usr/bin/id").unwrap();
    let v = d.run(req).await.json();
    for (route, result) in v.as_object().unwrap() {
        assert!(
            !result.as_str().unwrap().starts_with("ESCAPED"),
            "{route}: {result}"
        );
    }
    // /usr/bin/id is not even in the task's root.
    assert_eq!(v["direct"], "FileNotFoundError");
    // Landlock: no EXECUTE right on a program that is in the root, on an
    // exec mount, and executable by DAC.
    assert_eq!(v["direct_in_root"], "PermissionError");
    assert_eq!(v["os_system"], "blocked", "/bin/sh is not allowlisted");
    for place in [".", "/tmp", "/dev/shm"] {
        assert_eq!(v[format!("copy_in_{place}")], "PermissionError", "{place}");
    }
    assert_eq!(
        v["symlink"], "FileNotFoundError",
        "the link's target is not in the root"
    );
    // seccomp: memfd_create is not on the allowlist.
    assert_eq!(v["memfd"], "PermissionError");
    // The loader itself may be executed (python needs it), but it cannot
    // read /usr/bin/id (not a read-only path) ...
    assert!(
        v["loader_on_id"].as_str().unwrap().starts_with("exit "),
        "{}",
        v["loader_on_id"]
    );
    // ... nor map a copy executable: scratch is mounted noexec.
    assert!(
        v["loader_on_copy"].as_str().unwrap().starts_with("exit "),
        "{}",
        v["loader_on_copy"]
    );
    assert_eq!(
        v["mmap_exec_scratch"], "PermissionError",
        "scratch is mounted noexec"
    );
    if std::path::Path::new("/usr/lib/apt/methods/http").exists() {
        assert!(
            v["loader_on_lib_program"]
                .as_str()
                .unwrap()
                .starts_with("exit "),
            "{}",
            v["loader_on_lib_program"]
        );
    }
    // Positive control: an allowlisted program may start itself.
    assert_eq!(v["allowlisted_python"], "exit 0");
}

#[tokio::test]
async fn program_not_on_allowlist_is_denied_before_anything_runs() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default());
    // 8,000 names of 100 bytes: 800 KB, a valid request. Each decision is
    // recorded, denials too: a record of every name was 1 MiB a request.
    let env = (0..8000)
        .map(|i| (format!("V{i:04}_{}", "X".repeat(94)), String::new()))
        .collect();
    let out = d
        .run(airlock_protocol::v1::RunTaskRequest {
            user: "alice".into(),
            program: "/usr/bin/id".into(),
            env,
            ..Default::default()
        })
        .await;
    let status = out.status.expect("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("allowlist"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("/usr/bin/python3"),
        "names what is allowed: {}",
        status.message()
    );
    let audit = d.audit();
    let denial = audit.iter().find(|r| r["event"] == "admission").unwrap();
    assert_eq!(denial["decision"], "deny");
    assert_eq!(denial["program"], "/usr/bin/id");
    assert_eq!(denial["env_count"], 8000);
    assert_eq!(denial["env_names_abridged"], true);
    let names = denial["env_names"].as_array().unwrap();
    assert!(names[0].as_str().unwrap().starts_with("V0000_"), "sorted");
    // Whole names only (a cut one would be a name nobody asked for): 40
    // of 100 bytes fill 4 KiB; the digest pins all 8,000.
    assert_eq!(names.len(), 40);
    assert!(names.iter().all(|n| n.as_str().unwrap().len() == 100));
    let mut all: Vec<String> = (0..8000)
        .map(|i| format!("V{i:04}_{}", "X".repeat(94)))
        .collect();
    all.sort();
    let joined: Vec<u8> = all.iter().flat_map(|n| n.bytes().chain([0])).collect();
    let digest = airlock_executor::pin::sha256_hex(joined.as_slice()).unwrap();
    assert_eq!(denial["env_names_sha256"], digest.as_str());
    let size = std::fs::metadata(&d.audit_log).unwrap().len();
    assert!(size < 16 << 10, "the audit log is {size} bytes");
    assert!(d.scratch_dirs().is_empty(), "no scratch dir was made");
}
