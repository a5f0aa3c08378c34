//! What the watch caches keep of each object. The operator holds every EE pod of the cluster in
//! memory (10,000 of them at the scale benchmarked), and a pod as the API returns it is mostly what
//! the kubelet needs and the planner never reads: environment variables, volumes, probes, security
//! contexts, image ids. Trimming it as it arrives, before the reflector stores it, is what keeps the
//! operator's memory proportional to what it uses.

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Node, NodeCondition, NodeStatus, Pod, PodSpec, PodStatus,
};
use kube::Resource;

/// Clears the `managedFields` of any object: one entry per field manager, each a map of the
/// fields it owns, and nothing here reads them.
pub fn managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Keeps of an EE pod what the observer, the planner and the autoscaler read: name, namespace,
/// labels, owner, creation and deletion times; the node and each container's resources; the phase,
/// the Ready condition, the pod IP (the utilization samples), the start time (the init timeout) and
/// the containers' states (why a runtime failed to start).
pub fn ee_pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.generate_name = None;
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            containers: spec.containers.into_iter().map(resources_only).collect(),
            init_containers: spec
                .init_containers
                .map(|cs| cs.into_iter().map(resources_only).collect()),
            ..PodSpec::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: lmi_crds::ee_contract::ready_condition_only(status.conditions),
            pod_ip: status.pod_ip,
            start_time: status.start_time,
            container_statuses: status
                .container_statuses
                .map(|cs| cs.into_iter().map(state_only).collect()),
            ..PodStatus::default()
        });
    }
}

fn resources_only(container: Container) -> Container {
    Container {
        name: container.name,
        resources: container.resources,
        ..Container::default()
    }
}

fn state_only(status: ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: status.name,
        ready: status.ready,
        restart_count: status.restart_count,
        state: status.state,
        last_state: status.last_state,
        ..ContainerStatus::default()
    }
}

/// Drops of a node what the planner never reads and a real node carries in quantity: the images
/// it holds, its volumes and its system info, and its conditions' heartbeat times.
pub fn node(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.take() {
        node.status = Some(NodeStatus {
            allocatable: status.allocatable,
            capacity: status.capacity,
            // Without the heartbeat times, which the kubelet rewrites every few seconds and
            // nothing here reads: an unchanged node then looks unchanged.
            conditions: status.conditions.map(|conditions| {
                conditions
                    .into_iter()
                    .map(|c| NodeCondition {
                        last_heartbeat_time: None,
                        ..c
                    })
                    .collect()
            }),
            ..NodeStatus::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An EE pod as the API returns it once running (the shape `plan::ee_pod` writes, with the
    /// kubelet's status).
    fn running_ee() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "hello-v1-ee-0", "namespace": "ns", "uid": "u",
                "creationTimestamp": "2026-12-02T07:00:00Z",
                "labels": {"lmi.dev/capacity-provider": "cp", "lmi.dev/function": "hello"},
                "annotations": {"lmi.dev/invoke-token-digest": "x".repeat(64)},
                "ownerReferences": [{"apiVersion": "lmi.dev/v1alpha1", "kind": "FunctionVersion",
                    "name": "hello-v1", "uid": "v", "controller": true}],
                "managedFields": [{"manager": "lmi-operator", "operation": "Apply"}]
            },
            "spec": {
                "nodeName": "node-1",
                "initContainers": [{"name": "sidecar", "image": "lmi-sidecar",
                    "restartPolicy": "Always",
                    "env": [{"name": "LMI_INVOKE_TOKEN", "value": "t"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}],
                "containers": [{"name": "function", "image": "fn",
                    "env": (0..40).map(|i| json!({"name": format!("V{i}"), "value": "v"})).collect::<Vec<_>>(),
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9000}}}],
                "volumes": [{"name": "tmp", "emptyDir": {}}]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.7", "hostIP": "192.0.2.1",
                "startTime": "2026-12-02T07:00:01Z",
                "conditions": [{"type": "Ready", "status": "True",
                    "lastTransitionTime": "2026-12-02T07:00:03Z"},
                    {"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "function", "ready": true, "restartCount": 1,
                    "image": "fn", "imageID": "sha256:abc", "containerID": "containerd://1",
                    "state": {"running": {"startedAt": "2026-12-02T07:00:02Z"}},
                    "lastState": {"terminated": {"exitCode": 1, "message": "boom"}}}]
            }
        }))
        .expect("an EE pod")
    }

    #[test]
    fn a_trimmed_ee_pod_keeps_what_is_read_at_a_fraction_of_the_size() {
        let full = running_ee();
        let mut trimmed = full.clone();
        ee_pod(&mut trimmed);
        let size = |p: &Pod| serde_json::to_vec(p).map(|v| v.len()).unwrap_or(0);
        assert!(
            size(&trimmed) * 2 < size(&full),
            "{} of {}",
            size(&trimmed),
            size(&full)
        );

        assert_eq!(trimmed.metadata.labels, full.metadata.labels);
        assert_eq!(
            trimmed.metadata.owner_references,
            full.metadata.owner_references
        );
        assert_eq!(
            trimmed.metadata.creation_timestamp,
            full.metadata.creation_timestamp
        );
        assert!(
            trimmed.metadata.annotations.is_none() && trimmed.metadata.managed_fields.is_none()
        );
        let (spec, full_spec) = (trimmed.spec.unwrap(), full.spec.unwrap());
        assert_eq!(spec.node_name, full_spec.node_name);
        assert_eq!(
            spec.containers[0].resources,
            full_spec.containers[0].resources
        );
        assert_eq!(
            spec.init_containers.unwrap()[0].resources,
            full_spec.init_containers.unwrap()[0].resources
        );
        assert!(spec.containers[0].env.is_none() && spec.volumes.is_none());
        let (status, full_status) = (trimmed.status.unwrap(), full.status.unwrap());
        assert_eq!(status.phase, full_status.phase);
        assert_eq!(status.pod_ip, full_status.pod_ip);
        assert_eq!(status.start_time, full_status.start_time);
        let ready = status.conditions.unwrap();
        assert_eq!((ready.len(), ready[0].status.as_str()), (1, "True"));
        let function = &status.container_statuses.unwrap()[0];
        let full_function = &full_status.container_statuses.unwrap()[0];
        assert_eq!(function.state, full_function.state);
        assert_eq!(function.last_state, full_function.last_state);
        assert_eq!(function.restart_count, 1);
        assert!(function.image_id.is_empty());
    }

    #[test]
    fn a_trimmed_node_keeps_its_room_and_conditions() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "z"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "2"}, "conditions": [{"type": "Ready", "status": "True",
                    "lastHeartbeatTime": "2026-12-02T07:00:00Z"}],
                "images": [{"names": ["a"], "sizeBytes": 1}]}
        }))
        .expect("a node");
        let before = n.clone();
        node(&mut n);
        assert_eq!(n.spec, before.spec);
        assert_eq!(n.metadata.labels, before.metadata.labels);
        let (status, full) = (n.status.unwrap(), before.status.unwrap());
        assert_eq!(status.allocatable, full.allocatable);
        let (ready, full_ready) = (&status.conditions.unwrap()[0], &full.conditions.unwrap()[0]);
        assert_eq!(
            (&ready.type_, &ready.status),
            (&full_ready.type_, &full_ready.status)
        );
        assert!(ready.last_heartbeat_time.is_none() && full_ready.last_heartbeat_time.is_some());
        assert!(status.images.is_none());
    }
}
