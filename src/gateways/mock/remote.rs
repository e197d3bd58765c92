//! The `mock` provider over HTTP (`[channels.<name>.mock] gateway_url`): Waspy's adapter,
//! sending to the simulator's `/mock` API so that the simulator's webhooks come back in the
//! mock's format, which is what the channel's listener reads.

use crate::config::{ProviderKind, Secret};
use crate::gateways::{Adapter, HttpCall, HttpReply, SendContext, SendResult, waspy};
use crate::job::Job;
use crate::retry::{ErrorClass, Failure};

/// Waspy's adapter, speaking for the `mock` provider.
pub struct Remote {
    waspy: waspy::send::Waspy,
}

impl Remote {
    /// An adapter sending from `sender` with `api_key` (the simulator checks only that both
    /// are there).
    pub fn new(sender: String, api_key: Secret) -> Self {
        Self {
            waspy: waspy::send::Waspy::new(sender, api_key),
        }
    }
}

impl Adapter for Remote {
    /// `mock`: outcomes name it, and its webhooks are read in the mock's format.
    fn provider(&self) -> ProviderKind {
        ProviderKind::Mock
    }

    /// Waspy's request, on the mock's path. Unlike the in-process mock it refuses what Waspy
    /// cannot express: it is Waspy's API on the wire.
    fn request(&self, job: &Job, ctx: SendContext<'_>) -> Result<HttpCall, Failure> {
        let mut call = self.waspy.request(job, ctx)?;
        call.path = super::simulator::PATH.to_owned();
        Ok(call)
    }

    fn response(&self, reply: &HttpReply) -> SendResult {
        self.waspy.response(reply)
    }

    /// Its receipts carry Waspy's codes, as the in-process mock's do.
    fn code_class(&self, code: &str) -> Option<ErrorClass> {
        waspy::send::code_class(code)
    }
}
