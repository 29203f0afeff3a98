//! tenantgate: a sidecar reverse proxy that keeps SaaS tenants apart on their
//! way to AWS Bedrock and SageMaker. See README.md for the request pipeline.
#![forbid(unsafe_code)]

pub mod authn;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod glob;
pub mod principal;
pub mod secret;
pub mod template;
pub mod tls;
pub mod audit;
pub mod aws;
pub mod body;
pub mod conn;
pub mod route;
pub mod upstream;
pub mod admin;
pub mod metrics;
pub mod decide;
pub mod protocol;
pub mod proxy;
pub mod run;
pub mod server;
pub mod family;
pub mod model_id;
pub mod session;
#[cfg(test)]
pub(crate) mod test_support;
pub mod validate;
pub mod filter;
pub mod usage;
pub mod ratelimit;
pub mod post;
pub mod budget;
