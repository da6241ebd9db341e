//! Several filters as one program. The kernel runs every installed filter
//! on every syscall that its constant-action cache does not settle, and
//! each filter installed costs a conversion to eBPF, a JIT compilation and
//! a pass of the cache emulation: one program does all of that once.
//! [`super::compile_set`] builds one tree for all of a task's filters and
//! uses [`merge`] only for the few syscalls some filter decides by their
//! arguments (the rules of each filter for that syscall, merged); merging
//! whole filters works too (tested) but copies the small ones once per
//! verdict of the large one.
//!
//! The program decides exactly as the kernel decides for the filters
//! installed one after another (`seccomp_run_filters` in
//! kernel/seccomp.c): the result with the lowest action (`ACTION_ONLY`,
//! compared as signed) wins, and of equal actions the one of the filter
//! installed last (the kernel runs the newest first, and only a strictly
//! lower action replaces its result).
//!
//! How: each filter is copied whole, its `RET k` instructions turned into
//! jumps to a copy of the next filter that carries the verdict so far (the
//! verdicts are few: a copy per distinct verdict; a filter that cannot
//! change a verdict is skipped), and the last filter's copies return the
//! verdict. Nothing but constants decides a jump to a copy, so the kernel's
//! cache emulation (`seccomp_is_const_allow`) still finds every syscall
//! that all the filters allow without looking at arguments (tested). The
//! largest filter runs first, then the others in the kernel's order.

use std::collections::BTreeMap;

use super::{CompileError, Insn, BPF_ABS, BPF_ALU, BPF_AND, BPF_JA, BPF_JMP, BPF_K, BPF_LD};
use super::{BPF_JEQ, BPF_JGE, BPF_JGT, BPF_RET, BPF_W};

const BPF_JSET: u16 = 0x40;

/// Most instructions the kernel takes in one classic BPF program
/// (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// The verdict so far: the return value, and the filters (a bit per
/// install index) whose result of the same action would replace it
/// because the kernel would have run them first: the ones installed later
/// than the filter it came from, of those not run yet. Empty for the
/// kernel's starting `ALLOW`, which only a lower action replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Verdict {
    ret: u32,
    ties_to: u64,
}

/// The kernel's `ACTION_ONLY`: the action bits, compared as signed.
pub(crate) fn action_only(ret: u32) -> i32 {
    (ret & libc::SECCOMP_RET_ACTION_FULL) as i32
}

impl Verdict {
    const START: Self = Self {
        ret: libc::SECCOMP_RET_ALLOW,
        ties_to: 0,
    };

    /// The verdict once filter `index` returned `ret`, with `left` the
    /// filters still to run.
    fn with(self, ret: u32, index: usize, left: u64) -> Self {
        let (new, old) = (action_only(ret), action_only(self.ret));
        let next = if new < old || (new == old && self.ties_to & (1 << index) != 0) {
            Self {
                ret,
                ties_to: !0 << index << 1,
            }
        } else {
            self
        };
        Self {
            ties_to: next.ties_to & left,
            ..next
        }
    }
}

/// The kernel's verdict for filters that returned `rets`, in install
/// order.
pub(crate) fn installed_verdict(rets: &[u32]) -> u32 {
    rets.iter()
        .rev()
        .fold(libc::SECCOMP_RET_ALLOW, |ret, &cur| {
            if action_only(cur) < action_only(ret) {
                cur
            } else {
                ret
            }
        })
}

/// One program deciding as `filters` (in install order) do together.
pub fn merge(filters: &[&[Insn]]) -> Result<Vec<Insn>, CompileError> {
    for filter in filters {
        check(filter)?;
    }
    // Evaluation order: the largest first, so only small filters are
    // copied; then the kernel's, newest first, so that of two results of
    // one action the first stands, and verdicts are few.
    let mut order: Vec<usize> = (0..filters.len()).rev().collect();
    if let Some(largest) = (0..filters.len()).max_by_key(|&i| (filters[i].len(), i)) {
        order.retain(|&i| i != largest);
        order.insert(0, largest);
    }
    if filters.len() > 64 {
        return Err(CompileError::Merge("more than 64 filters".into()));
    }
    // The filters (bits of install indices) from position `pos` on.
    let left_from = |pos: usize| order[pos..].iter().fold(0u64, |m, &i| m | 1 << i);
    let returns = |i: usize| {
        filters[i]
            .iter()
            .filter(|insn| insn.code == BPF_RET | BPF_K)
            .map(|insn| insn.k)
    };
    // Whether a filter from `pos` on may return another value of `ret`'s
    // action.
    let rivals = |pos: usize, ret: u32| {
        order[pos..]
            .iter()
            .any(|&later| returns(later).any(|k| action_only(k) == action_only(ret) && k != ret))
    };
    // Whether the filter at `pos` may change `verdict`: if not, its copy
    // is skipped (when no later one may either, the verdict is returned).
    // Taking over a verdict of the same value matters only when a filter
    // after it may return another value of that action.
    let changes = |pos: usize, verdict: Verdict| {
        let (index, left) = (order[pos], left_from(pos + 1));
        let unchanged = Verdict {
            ties_to: verdict.ties_to & left,
            ..verdict
        };
        let rivals = rivals(pos + 1, verdict.ret);
        returns(index).any(|k| {
            let next = verdict.with(k, index, left);
            next.ret != verdict.ret || (rivals && next != unchanged)
        })
    };

    let mut out: Vec<Insn> = Vec::new();
    // Per position in `order`: the verdicts its copies start with, and the
    // jumps waiting for each copy's address.
    let mut waiting: Vec<BTreeMap<Verdict, Vec<usize>>> = vec![BTreeMap::new(); order.len()];
    if let Some(first) = waiting.first_mut() {
        first.insert(Verdict::START, Vec::new());
    }
    for pos in 0..order.len() {
        let index = order[pos];
        let copies = std::mem::take(&mut waiting[pos]);
        for (verdict, jumps) in copies {
            let start = out.len();
            for at in jumps {
                out[at].k = u32::try_from(start - at - 1).map_err(|_| CompileError::TooLong)?;
            }
            for insn in filters[index] {
                if insn.code != BPF_RET | BPF_K {
                    out.push(insn.clone());
                    continue;
                }
                let next = verdict.with(insn.k, index, left_from(pos + 1));
                match (pos + 1..order.len()).find(|&later| changes(later, next)) {
                    None => out.push(Insn {
                        k: next.ret,
                        ..insn.clone()
                    }),
                    Some(later) => {
                        // The filters skipped cannot change it; and
                        // who may take it over matters only when one may
                        // return another value.
                        let next = Verdict {
                            ties_to: match rivals(later, next.ret) {
                                true => next.ties_to & left_from(later),
                                false => 0,
                            },
                            ..next
                        };
                        waiting[later].entry(next).or_default().push(out.len());
                        out.push(Insn {
                            code: BPF_JMP | BPF_JA,
                            jt: 0,
                            jf: 0,
                            k: 0,
                        });
                    }
                }
            }
            if out.len() > MAX_INSNS {
                return Err(CompileError::TooLong);
            }
        }
    }
    Ok(out)
}

/// Accepts the instructions this module's compiler emits, each jump
/// inside its filter, and a filter that ends in a return: what the copies
/// rely on.
fn check(filter: &[Insn]) -> Result<(), CompileError> {
    let bad = |pc: usize, why: &str| CompileError::Merge(format!("instruction {pc}: {why}"));
    let inside = |pc: usize, offset: u32| pc + 1 + (offset as usize) < filter.len();
    for (pc, insn) in filter.iter().enumerate() {
        let ok = match insn.code {
            c if c == BPF_LD | BPF_W | BPF_ABS || c == BPF_ALU | BPF_AND | BPF_K => true,
            c if c == BPF_RET | BPF_K => true,
            c if c == BPF_JMP | BPF_JA => inside(pc, insn.k),
            c if [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET]
                .iter()
                .any(|op| c == BPF_JMP | op | BPF_K) =>
            {
                inside(pc, insn.jt.into()) && inside(pc, insn.jf.into())
            }
            other => return Err(bad(pc, &format!("opcode {other:#x} is not merged"))),
        };
        if !ok {
            return Err(bad(pc, "jumps out of its filter"));
        }
    }
    match filter.last() {
        Some(insn) if insn.code == BPF_RET | BPF_K => Ok(()),
        _ => Err(CompileError::Merge("a filter must end in a return".into())),
    }
}
