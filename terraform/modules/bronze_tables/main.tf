locals {
  # Generated from the event contract (python -m retail_pipeline.warehouse.terraform_columns), the
  # same definitions the pipeline's own Snowflake DDL comes from; a test fails when it is stale.
  spec = jsondecode(file("${path.module}/tables.json"))
  meta = snowflake_table.this["_META"].fully_qualified_name
}

resource "snowflake_table" "this" {
  for_each = local.spec.tables

  database                    = var.database
  schema                      = var.schema
  name                        = each.key
  comment                     = "Bronze, raw and append-only; written by retail-pipeline. Columns generated from the event contract."
  data_retention_time_in_days = var.data_retention_time_in_days
  change_tracking             = var.change_tracking

  dynamic "column" {
    for_each = each.value.columns

    content {
      name     = column.value.name
      type     = column.value.type
      nullable = column.value.nullable
    }
  }

  # Bronze is the only copy of the raw events. Provider 1.2.0 changes columns in place (ALTER
  # TABLE ADD/DROP/ALTER COLUMN) and replaces a table only for a new database or schema; whatever
  # would replace or destroy one fails the plan instead (tests/terraform/test_plan_keeps_data.py).
  lifecycle {
    prevent_destroy = true
  }
}

# The loader reads the Bronze schema version from _META and, when none is recorded, runs its own
# DDL (which needs CREATE privileges it does not have here). Terraform made these tables, so it
# records the version they are at; an older row is left alone (the loader then refuses to start).
resource "snowflake_execute" "schema_version" {
  execute = "INSERT INTO ${local.meta} (KEY, VALUE) SELECT 'schema_version', '${local.spec.schema_version}' WHERE NOT EXISTS (SELECT 1 FROM ${local.meta} WHERE KEY = 'schema_version')"
  revert  = "DELETE FROM ${local.meta} WHERE KEY = 'schema_version' AND VALUE = '${local.spec.schema_version}'"
}
