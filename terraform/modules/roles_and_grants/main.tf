# The role model (docs/terraform.md), least privilege:
#   loader       writes Bronze only: appends to every Bronze table, and reads, updates or deletes
#                only the bookkeeping rows it maintains (_META fence rows, _LOADS counts,
#                _POSITIONS). It never reads the event, reference or dead-letter tables (they
#                hold personal data, and the loader needs none of it).
#   transformer  reads Bronze; creates and owns the tables and views dbt builds in Silver, Gold and
#                the test-failure schema; with var.environment_schemas, also creates (and so owns)
#                the schemas of development and CI builds, <PREFIX>_SILVER and so on.
#   reporting    reads Gold only; people get it too (reporter_grantees: Power BI users).
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
    loader_bronze_tables      = { role = "loader", schema = var.bronze_schema, objects = "TABLES", privileges = ["INSERT"] }
    transformer_bronze_tables = { role = "transformer", schema = var.bronze_schema, objects = "TABLES", privileges = ["SELECT"] }
    reporting_gold_tables     = { role = "reporting", schema = var.gold_schema, objects = "TABLES", privileges = ["SELECT"] }
    reporting_gold_views      = { role = "reporting", schema = var.gold_schema, objects = "VIEWS", privileges = ["SELECT"] }
  }

  # Beyond appending, the loader reads and changes only these tables
  # (retail_pipeline.warehouse.snowflake): it reads the schema version in _META and takes the
  # fences of its source partitions there (`update _meta set value = <load id>`, on rows it
  # inserts), finds a snapshot already loaded and adds to its run's counts in _LOADS, and reads
  # and insert-or-replaces its _POSITIONS (delete, then insert).
  loader_bookkeeping = {
    _META      = ["SELECT", "UPDATE"]
    _LOADS     = ["SELECT", "UPDATE"]
    _POSITIONS = ["SELECT", "DELETE"]
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

# The service users sign in from these addresses only. An empty list is a deliberate choice
# (variables.tf): no network policy, key-pair authentication alone.
resource "snowflake_network_policy" "this" {
  count = length(var.network_policy.allowed_ip_list) > 0 ? 1 : 0

  name            = var.network_policy.name
  allowed_ip_list = var.network_policy.allowed_ip_list
  comment         = "retail-pipeline service users: the addresses they may sign in from."
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
  network_policy                 = one(snowflake_network_policy.this[*].name)
}

resource "snowflake_grant_account_role" "user" {
  for_each = local.roles

  role_name = snowflake_account_role.this[each.key].name
  user_name = snowflake_service_user.this[each.key].name
}

# People read Gold through the reporting role too: the existing users (for instance provisioned by
# SCIM from Entra ID, who sign in to Power BI with SSO) and roles listed in reporter_grantees. It
# is the only pipeline role granted beyond its own service user and the parent role.
resource "snowflake_grant_account_role" "reporter_user" {
  for_each = toset(var.reporter_grantees.users)

  role_name = snowflake_account_role.this["reporting"].name
  user_name = each.key
}

resource "snowflake_grant_account_role" "reporter_role" {
  for_each = toset(var.reporter_grantees.roles)

  role_name        = snowflake_account_role.this["reporting"].name
  parent_role_name = each.key

  lifecycle {
    precondition {
      condition     = !contains(concat([for name in values(var.roles) : upper(name)], [upper(var.parent_role), "PUBLIC"]), upper(each.key))
      error_message = "reporter_grantees.roles may not name a pipeline role, the parent role or PUBLIC (${each.key}): a pipeline role would read Gold, the parent already has it (grant_account_role.parent), PUBLIC is every user."
    }
  }
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

# Isolated environments (docs/transform.md#environments): development and CI builds write
# <PREFIX>_SILVER, <PREFIX>_GOLD and <PREFIX>_TEST_FAILURES next to the production schemas and
# read the shared Bronze. Creating a schema makes the transformer its owner, which is all it needs
# there; it gets nothing more on the production schemas.
resource "snowflake_grant_privileges_to_account_role" "environment_schemas" {
  count = var.environment_schemas ? 1 : 0

  account_role_name = snowflake_account_role.this["transformer"].name
  privileges        = ["CREATE SCHEMA"]

  on_account_object {
    object_type = "DATABASE"
    object_name = var.database
  }
}
