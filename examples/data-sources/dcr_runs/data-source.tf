# Every run released into the research team's bucket, each verified as `dcr verify` verifies one.
data "dcr_runs" "study" {
  location = "gs://research-team-results/diabetes-study/"
}

output "unverified_runs" {
  value = [for r in data.dcr_runs.study.runs : "${r.uri}: ${r.failed_check} (${r.detail})" if !r.verified]
}

output "data_read" {
  value = flatten([for r in data.dcr_runs.study.runs : [for i in r.inputs : "${r.released_at} ${i.dataset}@${i.generation} under ${i.policy} v${i.policy_version}"]])
}
