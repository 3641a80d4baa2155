# Baseline guardrails, as a plain Rego module (OPA kube-mgmt style).
#
# input is the whole AdmissionReview. `deny` messages reject the request, `warn` messages are returned as warnings,
# `patch` operations (JSONPatch on the object) are applied by /mutate.
package policyctl.guardrails

# Workload kinds that carry a pod spec, and where it is.
pod_spec(obj) := obj.spec if obj.kind == "Pod"

pod_spec(obj) := obj.spec.template.spec if obj.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

pod_spec(obj) := obj.spec.jobTemplate.spec.template.spec if obj.kind == "CronJob"

# The pod spec is looked up once (each lookup tries every definition of pod_spec).
containers(obj) := array.concat(
	object.get(spec, "containers", []),
	array.concat(object.get(spec, "initContainers", []), object.get(spec, "ephemeralContainers", [])),
) if {
	spec := pod_spec(obj)
}

deny contains msg if {
	some container in containers(input.request.object)
	container.securityContext.privileged == true
	msg := sprintf("%s %s: container %s must not be privileged", [input.request.kind.kind, input.request.name, container.name])
}

deny contains msg if {
	some volume in pod_spec(input.request.object).volumes
	volume.hostPath
	msg := sprintf("%s %s: hostPath volume %s is not allowed", [input.request.kind.kind, input.request.name, volume.name])
}

warn contains msg if {
	some container in containers(input.request.object)
	untagged_or_latest(container.image)
	msg := sprintf("container %s: image %s should be pinned to a tag other than latest", [container.name, container.image])
}

untagged_or_latest(image) if endswith(image, ":latest")

# The tag lives in the last path segment (a registry host may carry a port); `split` on a plain string, not a regex.
untagged_or_latest(image) if {
	not contains(image, "@")
	segments := split(image, "/")
	not contains(segments[count(segments) - 1], ":")
}
