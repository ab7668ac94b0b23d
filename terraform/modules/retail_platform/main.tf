# The whole Snowflake side of the pipeline, composed from the other modules: the database, its
# four layer schemas, one warehouse a role, the Bronze tables, the roles with their service users
# and grants, and (given an Entra ID tenant) Power BI's SSO integration. Each environment calls it
# once with its own names, sizes and retention.

locals {
  # Schema names are fixed by the code, not by the environment: the loader writes BRONZE, dbt's
  # generate_schema_name builds SILVER, GOLD and TEST_FAILURES (tests/terraform checks them) in
  # production; development and CI builds create their own <PREFIX>_ schemas when
  # environment_schemas allows it (docs/transform.md#environments).
  schemas = {
    bronze        = { name = "BRONZE", comment = "Raw, append-only events and snapshots (retail-pipeline loaders)." }
    silver        = { name = "SILVER", comment = "Typed, deduplicated current state and history (dbt)." }
    gold          = { name = "GOLD", comment = "The business answers and the star schema (dbt)." }
    test_failures = { name = "TEST_FAILURES", comment = "Rows failing dbt tests (store_failures views)." }
  }

  warehouse_comments = {
    loader      = "Bronze loads."
    transformer = "dbt builds."
    reporting   = "Dashboards and BI."
  }
}

module "database" {
  source = "../snowflake_database"

  name                        = var.database.name
  data_retention_time_in_days = var.database.retention_days
}

module "schema" {
  source   = "../snowflake_schema"
  for_each = local.schemas

  database                    = module.database.name
  name                        = each.value.name
  comment                     = each.value.comment
  data_retention_time_in_days = var.schema_retention_days[each.key]
}

module "warehouse" {
  source   = "../snowflake_warehouse"
  for_each = var.warehouses

  name           = each.value.name
  comment        = local.warehouse_comments[each.key]
  warehouse_size = each.value.size
  auto_suspend   = each.value.auto_suspend
}

module "bronze_tables" {
  source = "../bronze_tables"

  database = module.database.name
  schema   = module.schema["bronze"].name
}

module "roles_and_grants" {
  source = "../roles_and_grants"

  database             = module.database.name
  bronze_schema        = module.schema["bronze"].fully_qualified_name
  silver_schema        = module.schema["silver"].fully_qualified_name
  gold_schema          = module.schema["gold"].fully_qualified_name
  test_failures_schema = module.schema["test_failures"].fully_qualified_name
  roles                = var.roles
  warehouses           = { for key, warehouse in module.warehouse : key => warehouse.name }
  service_users        = var.service_users
  network_policy       = var.network_policy
  reporter_grantees    = var.reporter_grantees
  environment_schemas  = var.environment_schemas

  # The grants on existing Bronze tables need the tables first.
  depends_on = [module.bronze_tables]
}

module "powerbi_sso" {
  source = "../powerbi_sso"

  name            = var.powerbi_sso.integration_name
  entra_tenant_id = var.powerbi_sso.entra_tenant_id
  allowed_roles   = coalesce(var.powerbi_sso.allowed_roles, [module.roles_and_grants.roles.reporting])
}
