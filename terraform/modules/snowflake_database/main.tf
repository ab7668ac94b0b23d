resource "snowflake_database" "this" {
  name                           = var.name
  comment                        = var.comment
  data_retention_time_in_days    = var.data_retention_time_in_days
  drop_public_schema_on_creation = true

  # Destroying the database drops Bronze, the only copy of the raw events: no plan may do it, in
  # any environment (Terraform takes no variable here). Tearing dev down is done on purpose, by
  # hand (docs/terraform.md#terraform-keeps-the-data).
  lifecycle {
    prevent_destroy = true
  }
}
