# Development: the smallest warehouses, one day of Time Travel, every name ending in _DEV so dev
# and prod can share one Snowflake account. docs/terraform.md says how to plan and apply it.

provider "snowflake" {
  # Account, user, private key and role come only from SNOWFLAKE_* environment variables.
  preview_features_enabled = ["snowflake_table_resource"]
}

locals {
  database = "RETAIL_DEV"

  # Schema names are fixed by the code: the loader writes BRONZE, dbt's generate_schema_name
  # builds SILVER, GOLD and TEST_FAILURES (tests/terraform checks both).
  schemas = {
    bronze        = { name = "BRONZE", retention_days = 1, comment = "Raw, append-only events and snapshots (retail-pipeline loaders)." }
    silver        = { name = "SILVER", retention_days = 1, comment = "Typed, deduplicated current state and history (dbt)." }
    gold          = { name = "GOLD", retention_days = 1, comment = "The business answers and the star schema (dbt)." }
    test_failures = { name = "TEST_FAILURES", retention_days = 0, comment = "Rows failing dbt tests (store_failures views)." }
  }

  warehouses = {
    loader      = { name = "LOADING_DEV", size = "XSMALL", auto_suspend = 60, comment = "Bronze loads." }
    transformer = { name = "TRANSFORMING_DEV", size = "XSMALL", auto_suspend = 60, comment = "dbt builds." }
    reporting   = { name = "REPORTING_DEV", size = "XSMALL", auto_suspend = 60, comment = "Dashboards and BI." }
  }

  roles = {
    loader      = "LOADER_DEV"
    transformer = "TRANSFORMER_DEV"
    reporting   = "REPORTER_DEV"
  }
}

module "database" {
  source = "../../modules/snowflake_database"

  name                        = local.database
  data_retention_time_in_days = 1
}

module "schema" {
  source   = "../../modules/snowflake_schema"
  for_each = local.schemas

  database                    = module.database.name
  name                        = each.value.name
  comment                     = each.value.comment
  data_retention_time_in_days = each.value.retention_days
}

module "warehouse" {
  source   = "../../modules/snowflake_warehouse"
  for_each = local.warehouses

  name           = each.value.name
  comment        = each.value.comment
  warehouse_size = each.value.size
  auto_suspend   = each.value.auto_suspend
}

module "bronze_tables" {
  source = "../../modules/bronze_tables"

  database = module.database.name
  schema   = module.schema["bronze"].name
}

module "roles_and_grants" {
  source = "../../modules/roles_and_grants"

  database             = module.database.name
  bronze_schema        = module.schema["bronze"].fully_qualified_name
  silver_schema        = module.schema["silver"].fully_qualified_name
  gold_schema          = module.schema["gold"].fully_qualified_name
  test_failures_schema = module.schema["test_failures"].fully_qualified_name
  roles                = local.roles
  warehouses           = { for key, warehouse in module.warehouse : key => warehouse.name }
  service_users = {
    loader      = { name = "RETAIL_LOADER_DEV", rsa_public_key = var.loader_rsa_public_key }
    transformer = { name = "RETAIL_TRANSFORMER_DEV", rsa_public_key = var.transformer_rsa_public_key }
    reporting   = { name = "RETAIL_REPORTER_DEV", rsa_public_key = var.reporting_rsa_public_key }
  }

  # The grants on existing Bronze tables need the tables first.
  depends_on = [module.bronze_tables]
}
