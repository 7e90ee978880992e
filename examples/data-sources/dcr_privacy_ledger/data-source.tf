# What the DP-synthetic stand-ins of a dataset have spent, for an audit or a report.
data "dcr_privacy_ledger" "patients" {
  dataset = dcr_dataset.patients.id
}

output "privacy_spent" {
  value = data.dcr_privacy_ledger.patients.epsilon_spent
}

output "stand_ins_generated" {
  value = length(data.dcr_privacy_ledger.patients.entries)
}
