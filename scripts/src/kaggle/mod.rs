//! Kaggle API client used by the companion binaries: credentials, HTTP with retries, kernel
//! push/status/output, output downloads, checkpoint verification and dataset publishing.
//! Everything here returns data or errors; the `cli` module does the printing.

pub mod answer;
pub mod api;
pub mod chain;
pub mod client;
pub mod credentials;
pub mod dataset;
pub mod download;
pub mod endpoint;
pub mod error;
pub mod metadata;
pub mod notebook_bridge;
pub mod progress;
pub mod publish;
pub mod quota;
pub mod redact;
pub mod secret;
pub mod smoke;
pub mod source;
pub mod toolchain;

pub use error::KaggleError;
