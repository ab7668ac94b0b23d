resource "snowflake_schema" "this" {
  database                    = var.database
  name                        = var.name
  comment                     = var.comment
  data_retention_time_in_days = var.data_retention_time_in_days
  # Managed access: only the schema owner (Terraform's role) grants on the objects in it, so a
  # role that creates a table cannot hand it to another role.
  with_managed_access = var.with_managed_access

  # Dropping a schema drops its tables with it (BRONZE holds the raw events): no plan may.
  lifecycle {
    prevent_destroy = true
  }
}
