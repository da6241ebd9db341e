//! The tree compiler must decide every syscall exactly as seccompiler's
//! linear program does: both run through a BPF interpreter over every
//! syscall number with arguments that hit each condition's edges.

use super::*;

/// Runs a classic BPF seccomp program on (nr, args); returns its verdict.
fn run(program: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = &program[pc];
        pc += 1;
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => {
                let k = ins.k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => acc &= ins.k,
            c if c == BPF_RET | BPF_K => return ins.k,
            c if c == BPF_JMP | BPF_JA => pc += ins.k as usize,
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    BPF_JEQ => acc == ins.k,
                    BPF_JGT => acc > ins.k,
                    BPF_JGE => acc >= ins.k,
                    0x40 => acc & ins.k != 0, // JSET
                    other => panic!("jump op {other:#x}"),
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
            other => panic!("instruction {other:#x} at {}", pc - 1),
        }
    }
}

fn samples() -> Vec<[u64; 6]> {
    let values = [
        0u64,
        1,
        2,
        3,
        10,
        0x5412, // TIOCSTI
        0x541c, // TIOCLINUX
        0x2_0000,
        0x7e02_0000,
        0x2000_0000, // MSG_FASTOPEN
        0x1_0000_0000,
        0x1_0000_0002,
        u64::MAX,
        0xffff_ffff,
    ];
    let mut out = vec![[0u64; 6]];
    for v in values {
        out.push([v; 6]);
        for i in 0..6 {
            let mut a = [0u64; 6];
            a[i] = v;
            out.push(a);
        }
    }
    // Protocol and family pairs for socket(2).
    for family in [1u64, 2, 10, 16, 17] {
        for ty in [1u64, 2, 3, 5, 0x80801] {
            for proto in [0u64, 6, 17, 132, 262] {
                out.push([family, ty, proto, 0, 0, 0]);
            }
        }
    }
    out
}

#[test]
fn tree_decides_like_seccompiler_for_every_syscall() {
    let ours = compile_profile(crate::seccomp_profile::PROFILE_JSON).unwrap();
    let theirs = seccompiler::compile_from_json(
        crate::seccomp_profile::PROFILE_JSON.as_bytes(),
        seccompiler::TargetArch::x86_64,
    )
    .unwrap();
    assert_eq!(ours.len(), theirs.len());
    let args = samples();
    for (name, program) in &ours {
        let reference = &theirs[name];
        assert!(
            program.len() < reference.len() || reference.len() < 64,
            "{name}: {} instructions, seccompiler {}",
            program.len(),
            reference.len()
        );
        for nr in 0..600 {
            for a in &args {
                assert_eq!(
                    run(program, AUDIT_ARCH_X86_64, nr, *a),
                    run(reference, AUDIT_ARCH_X86_64, nr, *a),
                    "{name}: syscall {nr} args {a:x?}"
                );
            }
        }
        assert_eq!(
            run(program, 0x4000_0003, 0, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS,
            "{name}: another architecture is killed"
        );
        assert_eq!(
            run(program, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 41, [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            "{name}: x32 syscalls are refused"
        );
    }
}

#[test]
fn every_condition_kind_compiles_to_its_meaning() {
    let json = r#"{"f": {"mismatch_action": {"errno": 1}, "match_action": "allow", "filter": [
        {"syscall": "read", "args": [{"index": 0, "type": "qword", "op": "gt", "val": 4294967298}]},
        {"syscall": "write", "args": [{"index": 1, "type": "qword", "op": "le", "val": 4294967296}]},
        {"syscall": "close", "args": [{"index": 2, "type": "dword", "op": "lt", "val": 7}]},
        {"syscall": "open", "args": [{"index": 3, "type": "qword", "op": "ge", "val": 5}]},
        {"syscall": "stat", "args": [{"index": 0, "type": "qword", "op": "ne", "val": 4294967296}]},
        {"syscall": "fstat", "args": [{"index": 0, "type": "qword", "op": "eq", "val": 4294967296}]}
    ]}}"#;
    let ours = compile_profile(json).unwrap();
    let theirs =
        seccompiler::compile_from_json(json.as_bytes(), seccompiler::TargetArch::x86_64).unwrap();
    let args = samples();
    for nr in 0..10 {
        for a in &args {
            assert_eq!(
                run(&ours["f"], AUDIT_ARCH_X86_64, nr, *a),
                run(&theirs["f"], AUDIT_ARCH_X86_64, nr, *a),
                "syscall {nr} args {a:x?}"
            );
        }
    }
}

#[test]
fn unknown_syscall_is_named() {
    let json = r#"{"f": {"mismatch_action": "allow", "match_action": "allow", "filter": [{"syscall": "no_such_call"}]}}"#;
    let err = compile_profile(json).unwrap_err().to_string();
    assert!(
        err.contains("no_such_call") && err.contains("syscalls.rs"),
        "{err}"
    );
}

#[test]
fn a_profile_too_large_for_short_jumps_still_compiles() {
    // A hundred alternatives of one syscall, one condition each, between
    // other rules: the tree's root cannot jump over them.
    let alts: Vec<String> = (0..100)
        .map(|v| format!(r#"{{"syscall": "ioctl", "args": [{{"index": 1, "type": "dword", "op": "eq", "val": {v}}}]}}"#))
        .collect();
    let json = format!(
        r#"{{"f": {{"mismatch_action": {{"errno": 1}}, "match_action": "allow", "filter": [
            {{"syscall": "read"}}, {{"syscall": "close"}}, {alts}, {{"syscall": "exit_group"}}]}}}}"#,
        alts = alts.join(",")
    );
    let ours = compile_profile(&json).unwrap();
    let theirs =
        seccompiler::compile_from_json(json.as_bytes(), seccompiler::TargetArch::x86_64).unwrap();
    assert!(
        ours["f"].iter().any(|i| i.code == BPF_JMP | BPF_JA),
        "the long form, with a jump per node"
    );
    for nr in 0..300 {
        for v in [0u64, 1, 17, 99, 100, 1000] {
            let a = [3, v, 0, 0, 0, 0];
            assert_eq!(
                run(&ours["f"], AUDIT_ARCH_X86_64, nr, a),
                run(&theirs["f"], AUDIT_ARCH_X86_64, nr, a),
                "syscall {nr} args {a:x?}"
            );
        }
    }
}

#[test]
fn profile_filters_are_compact() {
    let ours = compile_profile(crate::seccomp_profile::PROFILE_JSON).unwrap();
    for (name, program) in &ours {
        let jumps = program
            .iter()
            .filter(|i| i.code == BPF_JMP | BPF_JA)
            .count();
        assert_eq!(jumps, 0, "{name}: {} instructions", program.len());
    }
}
/// The kernel's verdict for filters installed in this order
/// (`seccomp_run_filters`: newest first, a strictly lower action wins).
fn run_installed(filters: &[&[Insn]], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for filter in filters.iter().rev() {
        let cur = run(filter, arch, nr, args);
        if merge::action_only(cur) < merge::action_only(ret) {
            ret = cur;
        }
    }
    ret
}

/// The kernel's `seccomp_is_const_allow`: whether the program allows `nr`
/// whatever the arguments, which puts `nr` in the kernel's cache of
/// syscalls no filter needs to run for.
fn const_allow(program: &[Insn], nr: u32) -> bool {
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let ins = &program[pc];
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => match ins.k {
                OFF_NR => acc = nr,
                OFF_ARCH => acc = AUDIT_ARCH_X86_64,
                _ => return false,
            },
            c if c == BPF_RET | BPF_K => return ins.k == libc::SECCOMP_RET_ALLOW,
            c if c == BPF_JMP | BPF_JA => pc += ins.k as usize,
            c if c == BPF_ALU | BPF_AND | BPF_K => acc &= ins.k,
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    BPF_JEQ => acc == ins.k,
                    BPF_JGT => acc > ins.k,
                    BPF_JGE => acc >= ins.k,
                    0x40 => acc & ins.k != 0,
                    other => panic!("jump op {other:#x}"),
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
            _ => return false,
        }
        pc += 1;
    }
}

/// Checks `merged` against `filters` installed one by one, for every
/// syscall number, the sample arguments, x32 and another architecture;
/// and that the kernel's cache finds the same always-allowed syscalls.
fn assert_merged_decides_like(filters: &[&[Insn]], merged: &[Insn], what: &str) {
    let args = samples();
    for arch in [AUDIT_ARCH_X86_64, 0x4000_0003] {
        for nr in (0..600).chain([X32_SYSCALL_BIT | 41]) {
            for a in &args {
                assert_eq!(
                    run(merged, arch, nr, *a),
                    run_installed(filters, arch, nr, *a),
                    "{what}: arch {arch:#x} syscall {nr} args {a:x?}"
                );
            }
        }
    }
    for nr in 0..600 {
        assert_eq!(
            const_allow(merged, nr),
            filters.iter().all(|f| const_allow(f, nr)),
            "{what}: the kernel's cache of syscall {nr}"
        );
    }
}

#[test]
fn merged_filters_decide_like_the_kernel_for_every_filter_set() {
    let sets = crate::seccomp_profile::compile().unwrap();
    let compiled = compile_profile(crate::seccomp_profile::PROFILE_JSON).unwrap();
    for names in [&sets.host_net, &sets.host_net_udp, &sets.no_net] {
        let filters: Vec<&[Insn]> = names.iter().map(|n| compiled[*n].as_slice()).collect();
        let set = compile_set(crate::seccomp_profile::PROFILE_JSON, names).unwrap();
        let apart: usize = filters.iter().map(|f| f.len()).sum();
        assert!(
            set.len() < apart,
            "{names:?}: {} instructions as one, {apart} apart",
            set.len()
        );
        assert_merged_decides_like(&filters, &set, &format!("{names:?}"));
        let merged = merge(&filters).unwrap();
        assert_merged_decides_like(&filters, &merged, &format!("{names:?} merged whole"));
    }
}

#[test]
fn merged_filters_break_ties_like_the_kernel() {
    // For read: EPERM from one, ENOSYS from the other (one action, two
    // values: the filter installed last wins), kill from a third for write
    // (the lowest action wins), and a condition on an argument.
    let json = r#"{
        "a": {"mismatch_action": "allow", "match_action": {"errno": 1}, "filter": [
            {"syscall": "read"}, {"syscall": "close", "args": [{"index": 0, "type": "dword", "op": "eq", "val": 3}]}]},
        "b": {"mismatch_action": "allow", "match_action": {"errno": 38}, "filter": [
            {"syscall": "read"}, {"syscall": "close"}]},
        "c": {"mismatch_action": "allow", "match_action": "kill_process", "filter": [
            {"syscall": "write"}]},
        "d": {"mismatch_action": {"errno": 13}, "match_action": "allow", "filter": [
            {"syscall": "read"}, {"syscall": "write"}, {"syscall": "close"}, {"syscall": "open"}]}
    }"#;
    let compiled = compile_profile(json).unwrap();
    let f = |n: &str| compiled[n].as_slice();
    for order in [
        vec![f("a"), f("b")],
        vec![f("b"), f("a")],
        vec![f("d"), f("a"), f("c"), f("b")],
        vec![f("b"), f("c"), f("a"), f("d")],
        vec![f("c"), f("d")],
        vec![f("d")],
    ] {
        let merged = merge(&order).unwrap();
        assert_merged_decides_like(&order, &merged, "synthetic");
    }
    for names in [
        vec!["a", "b"],
        vec!["b", "a"],
        vec!["d", "a", "c", "b"],
        vec!["b", "c", "a", "d"],
    ] {
        let filters: Vec<&[Insn]> = names.iter().map(|n| f(n)).collect();
        let set = compile_set(json, &names).unwrap();
        assert_merged_decides_like(&filters, &set, &format!("synthetic set {names:?}"));
    }
    let merged = merge(&[f("a"), f("b")]).unwrap();
    assert_eq!(
        run(&merged, AUDIT_ARCH_X86_64, 0, [0; 6]),
        libc::SECCOMP_RET_ERRNO | 38,
        "read: the filter installed last decides between two errnos"
    );
}

#[test]
fn merge_refuses_what_it_cannot_copy() {
    let ret_a = Insn {
        code: BPF_RET | 0x10,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let err = merge(&[&[ret_a]]).unwrap_err().to_string();
    assert!(err.contains("opcode"), "{err}");
    let jump_out = Insn {
        code: BPF_JMP | BPF_JA,
        jt: 0,
        jf: 0,
        k: 5,
    };
    let ret = Insn {
        code: BPF_RET | BPF_K,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let err = merge(&[&[jump_out, ret]]).unwrap_err().to_string();
    assert!(err.contains("jumps out"), "{err}");
}
