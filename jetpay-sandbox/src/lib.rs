//! A stateful stand-in for Jetpay. Filled in by the sandbox issue.
