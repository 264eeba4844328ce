//! Integration tests of scoring: XGBoost parity, the container contract, the local runner.
