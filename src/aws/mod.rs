//! AWS side: tenant-scoped credentials and SigV4 signing.
pub mod cache;
pub mod credentials;
pub mod headers;
pub mod sign;
pub mod sts;
