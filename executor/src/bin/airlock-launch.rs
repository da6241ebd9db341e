//! `airlock-launch`: the per-task launcher airlockd execs; see
//! `airlock_executor::launch`. Not meant to be run by hand.

fn main() {
    airlock_executor::launch::main()
}
