//! `nox image warm`: makes the template of one shape now, through the same steps a create
//! takes to its template (the base, the accelerator, `template::ensure`), so the first create
//! of that shape restores instead of booting.

use std::time::Duration;

use nox_core::image::{TemplateRequest, Warmed};
use nox_core::{Error, Progress};

use crate::template::{self, Shape};
use crate::{accel, create, image_verbs, images, network, LibvirtBackend};

/// As long as `nox create` waits for a guest by default (`--timeout 10m`).
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

pub fn warm(
    b: &LibvirtBackend,
    request: &TemplateRequest,
    progress: &dyn Progress,
) -> Result<Warmed, Error> {
    if let Some(why) = template::network_cold_reason(&request.network) {
        return Err(Error::Usage(format!(
            "VMs on --network {} boot cold ({why}), so they have no template; warm one for default, user or bridge:NAME",
            request.network
        )));
    }
    let conn = b.conn()?;
    // Checked before the download: a wrong --network fails at once, as in create.
    network::preflight(&b.host, &request.network)?;
    let image = create::base_for(b, &request.image, request.disk_bytes, progress)?;
    let accel = accel::choose(b.config.vm.domain_type, &*b.host.runner, progress)?;
    let shape = Shape {
        image: &image,
        cpus: request.cpus,
        memory_bytes: request.memory_bytes,
        disk_bytes: request.disk_bytes,
        network: &request.network,
        accel,
    };
    let (built, t) = match template::existing(b, &shape) {
        Some(t) => (false, t),
        None => (
            true,
            template::ensure(b, &conn, &request.image, &shape, BOOT_TIMEOUT, progress)?,
        ),
    };
    progress.done();
    let bases = images::list(&b.config.vm.storage_dir);
    Ok(Warmed {
        built,
        template: image_verbs::note_row(&t.dir, Some(&t.note), &bases),
    })
}
