//! The container image, built by `tests/build-image.sh` (buildah, no container engine, no
//! registry): its config says what the chart relies on (non-root user, entrypoint, ports),
//! it holds nothing but the two binaries and the CA bundle, and the proxy in it serves
//! requests from an otherwise empty root filesystem as user 65532.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use modelgate_tests::{harness::free_port, repo_root};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    layout.join("blobs").join(alg).join(hex)
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob(layout, digest)).unwrap()).unwrap()
}

/// Every file (not directory) under `root`, as absolute paths inside it.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(format!("/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    out.sort();
    out
}

/// Kills the child when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_image_runs_the_proxy_as_non_root_from_scratch() {
    let work = std::env::temp_dir().join(format!("modelgate-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("layout")).unwrap();
    let archive = work.join("modelgate.oci.tar");
    let t0 = Instant::now();
    let built = Command::new(repo_root().join("tests/build-image.sh"))
        .arg(&archive)
        .status()
        .unwrap();
    assert!(built.success(), "tests/build-image.sh failed");
    println!("image built in {:?}", t0.elapsed());

    // The OCI layout: index -> manifest -> config and layers.
    let layout = work.join("layout");
    let untar = |file: &Path, into: &Path| {
        let ok = Command::new("tar")
            .arg("-xf")
            .arg(file)
            .arg("-C")
            .arg(into)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar -xf {}", file.display());
    };
    untar(&archive, &layout);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = json_blob(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let config = json_blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532", "{c}");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/local/bin/modelgate-proxy"])
    );
    for port in ["4000/tcp", "4001/tcp", "8080/tcp"] {
        assert!(
            c["ExposedPorts"].get(port).is_some(),
            "{port} not exposed: {c}"
        );
    }
    assert_eq!(config["architecture"], "amd64");

    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        untar(&blob(&layout, layer["digest"].as_str().unwrap()), &rootfs);
    }
    assert_eq!(
        files(&rootfs),
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/usr/local/bin/modelgate-operator",
            "/usr/local/bin/modelgate-proxy",
        ]
    );

    // Both binaries run with nothing beside them (static: no loader, no libc) as 65532.
    // chroot needs root; CI runs as root.
    assert!(
        Command::new("id").arg("-u").output().unwrap().stdout == b"0\n",
        "this test runs the image's binaries under chroot, which needs root"
    );
    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.arg("--userspec=65532:65532").arg(&rootfs).args(args);
        c
    };
    let help = chroot(&["/usr/local/bin/modelgate-operator", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "{help:?}");

    // The proxy serves a config given to it (the chart gives it a ConfigMap through the API;
    // a file goes through the same loader) and writes nothing into its root filesystem, as
    // the chart's readOnlyRootFilesystem needs.
    std::fs::create_dir_all(rootfs.join("config")).unwrap();
    std::fs::write(
        rootfs.join("config/config.yaml"),
        "model_list:\n  - model_name: demo\n    litellm_params: {model: openai/gpt-4o, mock_response: from the image}\ngeneral_settings: {master_key: sk-image}\n",
    )
    .unwrap();
    let port = free_port();
    let _proxy = Child(
        chroot(&[
            "/usr/local/bin/modelgate-proxy",
            "--config",
            "/config/config.yaml",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let out = Command::new("curl")
            .args(["-sS", "-m", "2", "-H", "Authorization: Bearer sk-image"])
            .args(["-H", "Content-Type: application/json", "-d"])
            .arg(r#"{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}"#)
            .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .output()
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the proxy in the image never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        answer["choices"][0]["message"]["content"], "from the image",
        "{answer}"
    );
    assert_eq!(
        files(&rootfs).len(),
        4,
        "the proxy wrote into its root filesystem"
    );
    let _ = std::fs::remove_dir_all(&work);
}
