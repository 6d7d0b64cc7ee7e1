//! A proxy replica's Lease outlives a crash (nothing deletes it), so in a pod it names the
//! Pod as its owner and the garbage collector removes it with the Pod. Here the Pod is a
//! stored object (nothing runs Pods on this control plane) and the proxy a local process
//! told it runs in that Pod, as the chart's downward-API environment tells it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use modelgate_tests::harness::{Proxy, client, eventually, temp_ns};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replicas_lease_goes_with_its_pod() {
    let client = client().await;
    let ns = temp_ns(&client, "mg-lease").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "proxy-0"},
        "spec": {"containers": [{"name": "proxy", "image": "modelgate-proxy"}]},
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let uid = pod.metadata.uid.clone().unwrap();

    // A replica in another namespace than its ConfigMap cannot own its Lease by its Pod:
    // an owner in another namespace counts as gone, and the GC would delete the Lease.
    let mut elsewhere = Proxy::start_with_env(
        &ns.name,
        "proxy-x",
        &[],
        &[("POD_NAMESPACE", "default"), ("POD_UID", &uid)],
        "sk-k",
    );
    let lease = eventually("the other replica's Lease", Duration::from_secs(20), || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("modelgate-proxy-proxy-x")
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    assert_eq!(lease.metadata.owner_references, None);
    assert!(elsewhere.process.terminate(Duration::from_secs(15)));

    let mut proxy = Proxy::start_with_env(
        &ns.name,
        "proxy-0",
        &[],
        &[("POD_NAMESPACE", &ns.name), ("POD_UID", &uid)],
        "sk-k",
    );
    let lease = eventually("the replica's Lease", Duration::from_secs(20), || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("modelgate-proxy-proxy-0")
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let owners = lease.metadata.owner_references.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].uid.as_str()
        ),
        ("Pod", "proxy-0", uid.as_str())
    );

    // A crash: no shutdown, so the Lease stays behind...
    proxy.process.0.kill().unwrap();
    proxy.process.0.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        leases
            .get_opt("modelgate-proxy-proxy-0")
            .await
            .unwrap()
            .is_some(),
        "nothing but the GC should delete a crashed replica's Lease"
    );
    // ...until its Pod is deleted.
    pods.delete("proxy-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually(
        "the Lease to be garbage collected",
        Duration::from_secs(60),
        || {
            let leases = leases.clone();
            async move {
                match leases.get_opt("modelgate-proxy-proxy-0").await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
}
