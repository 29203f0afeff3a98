//! A local AWS on 127.0.0.1 for `tenantgate demo` and the benchmarks: STS
//! (AssumeRole, with session tags), Bedrock runtime, Bedrock agent runtime
//! and SageMaker runtime fakes, each verifying every request's SigV4
//! signature with its own verifier (`sigv4_check`), independent of the
//! signer the sidecar uses. It is not part of the production sidecar: the
//! `tenantgate` crate pulls it in only with its `demo` feature.

pub mod sigv4_check;
pub mod sim;
mod sim_agent;
mod sim_bedrock;
mod sim_route;
mod sim_sagemaker;
mod sim_sts;

pub use sim_agent::valid_session_id;
pub use sim_sagemaker::TARGET_MODEL;

/// Secret values of the simulator (its keys, issued session secrets and
/// tokens): `Debug` and `Display` never print them.
pub mod secret {
    use std::fmt;

    #[derive(Clone, PartialEq, Eq)]
    pub struct SecretString(String);

    impl SecretString {
        pub fn new(value: String) -> Self {
            SecretString(value)
        }

        pub fn expose(&self) -> &String {
            &self.0
        }
    }

    impl fmt::Debug for SecretString {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("[redacted]")
        }
    }
}
