//! `nox cp` end to end on both backends, through the real `nox` binary: a 50 MB round trip
//! with the SHA-256 equal, a tree with modes, owners and a link kept both ways, and a
//! container's symlinks that point at `/etc` never reaching the host's `/etc`.
//!
//! One VM and one container, shared by every step; the VM (a clone of the run's passt
//! template) is made while the container's steps run.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use nox_tests::fixture::{Fixture, USER_SHAPE};
use nox_tests::image::TestImage;
use nox_tests::{live, ok, text};

fn cp(fx: &Fixture, cfg: &Path, args: &[&str]) -> Output {
    fx.nox(cfg)
        .arg("cp")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn exec(fx: &Fixture, cfg: &Path, name: &str, argv: &[&str]) -> String {
    text(
        &ok(fx
            .nox(cfg)
            .args(["exec", name, "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap())
        .stdout,
    )
}

fn sha256(path: &Path) -> String {
    let out = ok(std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap());
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn failed_with(out: &Output, code: i32, words: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(words),
        "expected {words:?} in: {}",
        text(&out.stderr)
    );
}

/// A tree with what `cp -a` keeps: an owner that is not root, a setuid bit, a private
/// directory, a relative link. `(path, mode, uid, gid, type, link)` as `find -printf` says it.
const TREE: &[&str] = &[
    "tree 700 0 0 d ",
    "tree/a 640 1234 2345 f ",
    "tree/link 777 0 0 l a",
    "tree/sub 751 0 0 d ",
    "tree/sub/b 4755 0 0 f ",
];
const FIND_FORMAT: &str = "%P %m %U %G %y %l\\n";

fn make_tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    std::fs::create_dir_all(t.join("sub")).unwrap();
    std::fs::write(t.join("a"), "a\n").unwrap();
    std::fs::write(t.join("sub/b"), "b\n").unwrap();
    symlink("a", t.join("link")).unwrap();
    std::os::unix::fs::chown(t.join("a"), Some(1234), Some(2345)).unwrap();
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(t.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("a", 0o640);
    mode("sub/b", 0o4755);
    mode("sub", 0o751);
    mode("", 0o700);
    t
}

/// `find DIR -printf` lines for the tree, relative to DIR's parent, sorted.
fn listing(raw: &str) -> Vec<String> {
    let mut v: Vec<String> = raw.lines().map(|l| format!("tree{}", l_fix(l))).collect();
    v.sort();
    v
}

/// `%P` is empty for the starting point itself: "tree" + "/a ..." or "tree" + " 700 ...".
fn l_fix(l: &str) -> String {
    if l.starts_with(' ') {
        l.to_string()
    } else {
        format!("/{l}")
    }
}

fn host_listing(dir: &Path) -> Vec<String> {
    let out = ok(std::process::Command::new("find")
        .arg(dir)
        .args(["-printf", FIND_FORMAT])
        .output()
        .unwrap());
    listing(&text(&out.stdout))
}

/// The steps both backends share.
fn round_trip(fx: &Fixture, cfg: &Path, name: &str, big: &Path, tree: &Path) {
    let started = std::time::Instant::now();
    let want = sha256(big);
    let dst = format!("{name}:/root/big");
    ok(cp(fx, cfg, &[big.to_str().unwrap(), &dst]));
    let inside = exec(fx, cfg, name, &["sha256sum", "/root/big"]);
    assert!(inside.starts_with(&want), "{inside} vs {want}");
    let back = fx.dir.join(format!("{name}-big"));
    ok(cp(fx, cfg, &[&dst, back.to_str().unwrap()]));
    assert_eq!(sha256(&back), want);
    eprintln!("{name}: 50 MB in and out in {:?}", started.elapsed());

    // A tree into a directory lands under its own name, everything kept.
    let dst = format!("{name}:/root/");
    ok(cp(fx, cfg, &["-r", tree.to_str().unwrap(), &dst]));
    let inside = exec(
        fx,
        cfg,
        name,
        &["find", "/root/tree", "-printf", "%P %m %U %G %y %l\n"],
    );
    assert_eq!(listing(&inside), TREE, "in {name}");
    let out_dir = fx.dir.join(format!("{name}-out"));
    std::fs::create_dir_all(&out_dir).unwrap();
    ok(cp(
        fx,
        cfg,
        &[
            "-r",
            &format!("{name}:/root/tree"),
            out_dir.to_str().unwrap(),
        ],
    ));
    assert_eq!(host_listing(&out_dir.join("tree")), TREE, "out of {name}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("tree/sub/b")).unwrap(),
        "b\n"
    );

    // Mistakes: one line, exit 2 for what the user can fix, nothing copied.
    let dir_without_r = cp(fx, cfg, &[&format!("{name}:/root/tree"), "/tmp"]);
    failed_with(&dir_without_r, 2, "add -r");
    let nowhere = fx.dir.join(format!("{name}-nothing"));
    let missing = cp(
        fx,
        cfg,
        &[
            &format!("{name}:/root/no-such-file"),
            nowhere.to_str().unwrap(),
        ],
    );
    failed_with(&missing, 1, "does not exist");
    assert!(!nowhere.exists());
}

/// A container's symlink to /etc leads to the container's /etc, both ways; a tree holding
/// one comes out as a link, never followed.
fn container_symlinks(fx: &Fixture, cfg: &Path, ct: &str) {
    exec(fx, cfg, ct, &["ln", "-s", "/etc", "/tmp/evil"]);
    let marker = format!("nox-cp-escape-{}", fx.owner);
    let small = fx.dir.join("small");
    std::fs::write(&small, "inside only\n").unwrap();
    ok(cp(
        fx,
        cfg,
        &[small.to_str().unwrap(), &format!("{ct}:/tmp/evil/{marker}")],
    ));
    assert!(
        !Path::new("/etc").join(&marker).exists(),
        "the host's /etc was written"
    );
    assert_eq!(
        exec(fx, cfg, ct, &["cat", &format!("/etc/{marker}")]),
        "inside only\n"
    );

    let hostname = fx.dir.join("hostname");
    ok(cp(
        fx,
        cfg,
        &[
            &format!("{ct}:/tmp/evil/hostname"),
            hostname.to_str().unwrap(),
        ],
    ));
    let got = std::fs::read_to_string(&hostname).unwrap();
    assert_eq!(
        got.trim(),
        ct,
        "read something other than the container's /etc/hostname"
    );

    exec(fx, cfg, ct, &["mkdir", "/tmp/t2"]);
    exec(fx, cfg, ct, &["ln", "-s", "/etc", "/tmp/t2/link"]);
    let out = fx.dir.join("links");
    std::fs::create_dir_all(&out).unwrap();
    ok(cp(
        fx,
        cfg,
        &["-r", &format!("{ct}:/tmp/t2"), out.to_str().unwrap()],
    ));
    let link = out.join("t2/link");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/etc"));
    assert_eq!(std::fs::read_dir(out.join("t2")).unwrap().count(), 1);
}

#[test]
fn cp_round_trips_on_both_backends() {
    if !live("cp_round_trips_on_both_backends") {
        return;
    }
    let started = std::time::Instant::now();
    let image = TestImage::get();
    let fx = Fixture::new("copy");
    let cfg = fx.nox_config(&image, "");
    let vm = fx.unique_name("cpvm");
    let ct = fx.unique_name("cpct");
    fx.own_domain(&vm);

    let big = fx.dir.join("big");
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    let mut file = std::fs::File::create(&big).unwrap();
    std::io::copy(&mut std::io::Read::take(&mut random, 50 << 20), &mut file).unwrap();
    let tree = make_tree(&fx.dir);
    assert_eq!(host_listing(&tree), TREE);

    // Usage mistakes need no instance.
    failed_with(
        &cp(&fx, &cfg, &["/etc/hostname", "/tmp/h"]),
        2,
        "both paths are on the host",
    );
    failed_with(
        &cp(&fx, &cfg, &["a:/x", "b:/y"]),
        2,
        "both paths are in instances",
    );
    failed_with(
        &cp(&fx, &cfg, &["/etc/hostname", "web:tmp"]),
        2,
        "must be absolute",
    );

    std::thread::scope(|s| {
        let boot = s.spawn(|| {
            fx.nox(&cfg)
                .args(["create", &vm, "--image", "debian-12-test"])
                .args(USER_SHAPE)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        });
        fx.create_container(&cfg, &ct);
        round_trip(&fx, &cfg, &ct, &big, &tree);
        container_symlinks(&fx, &cfg, &ct);
        // A stopped container: a clear refusal, nothing half-copied.
        ok(fx.nox(&cfg).args(["stop", &ct]).output().unwrap());
        let stopped = cp(
            &fx,
            &cfg,
            &[big.to_str().unwrap(), &format!("{ct}:/root/again")],
        );
        failed_with(&stopped, 2, "is not running");

        ok(boot.join().unwrap());
        round_trip(&fx, &cfg, &vm, &big, &tree);
    });
    eprintln!("copy.rs took {:?}", started.elapsed());
}
