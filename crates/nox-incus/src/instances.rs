//! Instances: list, read, create (with placement), change state, reconfigure, delete.

use http::Method;

use crate::api::{
    Instance, InstanceFull, InstancePatch, InstancePut, InstanceState, InstanceStatePut,
    InstancesPost,
};
use crate::client::{enc, Client};
use crate::error::Result;
use crate::transport::Call;

impl Client {
    /// `GET /1.0/instances?recursion=1`: every instance of the project, on every member.
    pub fn instances(&self) -> Result<Vec<Instance>> {
        self.get(self.scoped("/1.0/instances?recursion=1"))
    }

    /// `GET /1.0/instances?recursion=2`: the same with each one's state (one request; the
    /// server asks the other members).
    pub fn instances_full(&self) -> Result<Vec<InstanceFull>> {
        self.get(self.scoped("/1.0/instances?recursion=2"))
    }

    /// `GET /1.0/instances?recursion=2&filter=type eq TYPE`: one type's instances with their
    /// state, in one request.
    pub fn instances_full_of(&self, kind: crate::api::InstanceType) -> Result<Vec<InstanceFull>> {
        self.get(self.scoped(&format!(
            "/1.0/instances?recursion=2&filter={}",
            enc(&format!("type eq {}", kind.as_str()))
        )))
    }

    /// `GET /1.0/instances/NAME`.
    pub fn instance(&self, name: &str) -> Result<Instance> {
        self.get(self.scoped(&instance_path(name)))
    }

    /// `GET /1.0/instances/NAME?recursion=1`: the instance with its state.
    pub fn instance_full(&self, name: &str) -> Result<InstanceFull> {
        self.get(self.scoped(&format!("{}?recursion=1", instance_path(name))))
    }

    /// `GET /1.0/instances/NAME/state`.
    pub fn instance_state(&self, name: &str) -> Result<InstanceState> {
        self.get(self.scoped(&format!("{}/state", instance_path(name))))
    }

    /// `POST /1.0/instances[?target=MEMBER]`, waiting until it is created (and started, if
    /// asked). Without a target, Incus places it.
    pub fn create_instance(&self, req: &InstancesPost, target: Option<&str>) -> Result<()> {
        let mut path = self.scoped("/1.0/instances");
        if let Some(member) = target {
            path.push_str(&format!("&target={}", enc(member)));
        }
        self.call_and_wait(Call::new(Method::POST, path).json(req))?;
        Ok(())
    }

    /// `PUT /1.0/instances/NAME/state`, waiting for the action to complete.
    pub fn set_instance_state(&self, name: &str, state: &InstanceStatePut) -> Result<()> {
        let path = self.scoped(&format!("{}/state", instance_path(name)));
        self.call_and_wait(Call::new(Method::PUT, path).json(state))?;
        Ok(())
    }

    pub fn start_instance(&self, name: &str) -> Result<()> {
        self.set_instance_state(name, &InstanceStatePut::start())
    }

    /// A clean shutdown waiting `timeout` seconds (-1: as long as it takes), or a kill when
    /// `force`.
    pub fn stop_instance(&self, name: &str, timeout: i64, force: bool) -> Result<()> {
        self.set_instance_state(name, &InstanceStatePut::stop(timeout, force))
    }

    pub fn restart_instance(&self, name: &str, timeout: i64, force: bool) -> Result<()> {
        self.set_instance_state(name, &InstanceStatePut::restart(timeout, force))
    }

    /// `PUT /1.0/instances/NAME`: replaces the writable configuration (read it with
    /// [`Instance::writable`], change it, write it).
    pub fn update_instance(&self, name: &str, put: &InstancePut) -> Result<()> {
        let path = self.scoped(&instance_path(name));
        self.call_and_wait(Call::new(Method::PUT, path).json(put))?;
        Ok(())
    }

    /// `PATCH /1.0/instances/NAME`: merges config keys and devices (a resize is
    /// `limits.cpu` / `limits.memory`, or the root device's `size`).
    pub fn patch_instance(&self, name: &str, patch: &InstancePatch) -> Result<()> {
        let path = self.scoped(&instance_path(name));
        self.call_and_wait(Call::new(Method::PATCH, path).json(patch))?;
        Ok(())
    }

    /// `DELETE /1.0/instances/NAME` (it must be stopped), waiting until it is gone.
    pub fn delete_instance(&self, name: &str) -> Result<()> {
        let path = self.scoped(&instance_path(name));
        self.call_and_wait(Call::new(Method::DELETE, path))?;
        Ok(())
    }
}

pub(crate) fn instance_path(name: &str) -> String {
    format!("/1.0/instances/{}", enc(name))
}
