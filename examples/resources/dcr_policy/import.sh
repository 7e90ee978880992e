# By policy name (bucket with its default name PROJECT-policy-NAME), or by BUCKET/NAME.
terraform import dcr_policy.study diabetes-study
terraform import dcr_policy.study my-policy-bucket/diabetes-study
