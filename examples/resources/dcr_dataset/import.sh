# By dataset name (bucket with its default name PROJECT-NAME), or by BUCKET/NAME.
terraform import dcr_dataset.patients patients
terraform import dcr_dataset.patients my-bucket/patients
