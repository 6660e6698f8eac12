//! Table-driven tests of the group state machine (filled in below).
