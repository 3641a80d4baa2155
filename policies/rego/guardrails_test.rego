package policyctl.guardrails_test

import data.policyctl.guardrails

pod(container) := {"request": {
	"kind": {"group": "", "version": "v1", "kind": "Pod"},
	"name": "p",
	"object": {"kind": "Pod", "spec": {"containers": [container]}},
}}

test_privileged_container_is_denied if {
	count(guardrails.deny) == 1 with input as pod({"name": "c", "image": "nginx:1.27", "securityContext": {"privileged": true}})
}

test_plain_container_passes if {
	count(guardrails.deny) == 0 with input as pod({"name": "c", "image": "nginx:1.27"})
	count(guardrails.warn) == 0 with input as pod({"name": "c", "image": "nginx:1.27"})
}

test_latest_and_untagged_images_warn if {
	count(guardrails.warn) == 1 with input as pod({"name": "c", "image": "nginx:latest"})
	count(guardrails.warn) == 1 with input as pod({"name": "c", "image": "registry.example.com:5000/team/nginx"})
	count(guardrails.warn) == 0 with input as pod({"name": "c", "image": "nginx@sha256:0123"})
}

test_deployment_host_path_is_denied if {
	deployment := {"request": {
		"kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
		"name": "d",
		"object": {"kind": "Deployment", "spec": {"template": {"spec": {
			"containers": [{"name": "c", "image": "nginx:1.27"}],
			"volumes": [{"name": "host", "hostPath": {"path": "/"}}],
		}}}},
	}}
	guardrails.deny == {"Deployment d: hostPath volume host is not allowed"} with input as deployment
}
