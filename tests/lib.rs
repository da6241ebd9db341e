//! End-to-end and escape tests for Airlock live in `suite/`; they start a
//! real `airlockd` as root and attack it from inside real tasks.
