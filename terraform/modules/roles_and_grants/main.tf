# The role model (docs/terraform.md), least privilege:
#   loader       writes Bronze only: appends to every Bronze table, updates or deletes only the
#                bookkeeping rows it maintains (_META lock row, _LOADS counts, _POSITIONS).
#   transformer  reads Bronze; creates and owns the tables and views dbt builds in Silver, Gold and
#                the test-failure schema.
#   reporting    reads Gold only.
# Future grants cover the tables created after an apply (new Bronze tables, every dbt rebuild).
# tests/terraform/test_policy.py fails when a grant here goes beyond this.

locals {
  roles = {
    loader = {
      name      = var.roles.loader
      warehouse = var.warehouses.loader
      comment   = "Writes Bronze only (retail-pipeline loaders)."
    }
    transformer = {
      name      = var.roles.transformer
      warehouse = var.warehouses.transformer
      comment   = "Reads Bronze, builds Silver and Gold (dbt)."
    }
    reporting = {
      name      = var.roles.reporting
      warehouse = var.warehouses.reporting
      comment   = "Reads Gold only (dashboards, BI)."
    }
  }

  # Privileges on a schema itself, one entry a role and schema. The transformer creates (and so
  # owns) every table and view dbt builds; owning them is all it needs on them. CREATE STAGE: each
  # loader session stages its Parquet files in a temporary stage of its own.
  schema_grants = {
    loader_bronze             = { role = "loader", schema = var.bronze_schema, privileges = ["USAGE", "CREATE STAGE"] }
    transformer_bronze        = { role = "transformer", schema = var.bronze_schema, privileges = ["USAGE"] }
    transformer_silver        = { role = "transformer", schema = var.silver_schema, privileges = ["USAGE", "CREATE TABLE", "CREATE VIEW"] }
    transformer_gold          = { role = "transformer", schema = var.gold_schema, privileges = ["USAGE", "CREATE TABLE", "CREATE VIEW"] }
    transformer_test_failures = { role = "transformer", schema = var.test_failures_schema, privileges = ["USAGE", "CREATE TABLE", "CREATE VIEW"] }
    reporting_gold            = { role = "reporting", schema = var.gold_schema, privileges = ["USAGE"] }
  }

  # Privileges on the tables (or views) of a schema: each is granted on all of them and on future
  # ones, so a new Bronze table or a table dbt recreates keeps it.
  object_grants = {
    loader_bronze_tables      = { role = "loader", schema = var.bronze_schema, objects = "TABLES", privileges = ["SELECT", "INSERT"] }
    transformer_bronze_tables = { role = "transformer", schema = var.bronze_schema, objects = "TABLES", privileges = ["SELECT"] }
    reporting_gold_tables     = { role = "reporting", schema = var.gold_schema, objects = "TABLES", privileges = ["SELECT"] }
    reporting_gold_views      = { role = "reporting", schema = var.gold_schema, objects = "VIEWS", privileges = ["SELECT"] }
  }

  # Beyond appending, the loader changes only these rows (retail_pipeline.warehouse.snowflake):
  # the writer lock `update _meta set value = value`, the run's `update _loads`, and the
  # insert-or-replace of `_positions` (delete, then insert).
  loader_bookkeeping = {
    _META      = ["UPDATE"]
    _LOADS     = ["UPDATE"]
    _POSITIONS = ["DELETE"]
  }
}

resource "snowflake_account_role" "this" {
  for_each = local.roles

  name    = each.value.name
  comment = each.value.comment
}

# Administrators inherit the pipeline roles (and so see what they own); no pipeline role
# inherits another.
resource "snowflake_grant_account_role" "parent" {
  for_each = local.roles

  role_name        = snowflake_account_role.this[each.key].name
  parent_role_name = var.parent_role
}

resource "snowflake_service_user" "this" {
  for_each = local.roles

  name                           = var.service_users[each.key].name
  comment                        = "retail-pipeline ${each.key}: key-pair authentication only."
  default_role                   = snowflake_account_role.this[each.key].name
  default_warehouse              = each.value.warehouse
  default_secondary_roles_option = "NONE"
  rsa_public_key                 = var.service_users[each.key].rsa_public_key
  rsa_public_key_2               = var.service_users[each.key].rsa_public_key_2
}

resource "snowflake_grant_account_role" "user" {
  for_each = local.roles

  role_name = snowflake_account_role.this[each.key].name
  user_name = snowflake_service_user.this[each.key].name
}

resource "snowflake_grant_privileges_to_account_role" "warehouse" {
  for_each = local.roles

  account_role_name = snowflake_account_role.this[each.key].name
  privileges        = ["USAGE"]

  on_account_object {
    object_type = "WAREHOUSE"
    object_name = each.value.warehouse
  }
}

resource "snowflake_grant_privileges_to_account_role" "database" {
  for_each = local.roles

  account_role_name = snowflake_account_role.this[each.key].name
  privileges        = ["USAGE"]

  on_account_object {
    object_type = "DATABASE"
    object_name = var.database
  }
}

resource "snowflake_grant_privileges_to_account_role" "schema" {
  for_each = local.schema_grants

  account_role_name = snowflake_account_role.this[each.value.role].name
  privileges        = each.value.privileges

  on_schema {
    schema_name = each.value.schema
  }
}

resource "snowflake_grant_privileges_to_account_role" "all_objects" {
  for_each = local.object_grants

  account_role_name = snowflake_account_role.this[each.value.role].name
  privileges        = each.value.privileges

  on_schema_object {
    all {
      object_type_plural = each.value.objects
      in_schema          = each.value.schema
    }
  }
}

resource "snowflake_grant_privileges_to_account_role" "future_objects" {
  for_each = local.object_grants

  account_role_name = snowflake_account_role.this[each.value.role].name
  privileges        = each.value.privileges

  on_schema_object {
    future {
      object_type_plural = each.value.objects
      in_schema          = each.value.schema
    }
  }
}

# Bronze is append-only for everything else: the loader updates or deletes only these tables.
resource "snowflake_grant_privileges_to_account_role" "loader_bookkeeping" {
  for_each = local.loader_bookkeeping

  account_role_name = snowflake_account_role.this["loader"].name
  privileges        = each.value

  on_schema_object {
    object_type = "TABLE"
    object_name = "${var.bronze_schema}.\"${each.key}\""
  }
}
