//! The end-to-end and fault tests are the integration tests under `tests/`; what they
//! share is `vectis-test-support`.
