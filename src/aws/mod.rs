//! AWS side: tenant-scoped credentials and SigV4 signing.
pub mod credentials;
pub mod sign;
