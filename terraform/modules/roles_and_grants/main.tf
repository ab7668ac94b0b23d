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

  # The schemas dbt builds in (models/silver, models/gold, store_failures views).
  transformer_schemas = {
    silver        = var.silver_schema
    gold          = var.gold_schema
    test_failures = var.test_failures_schema
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

# -- loader: Bronze only ------------------------------------------------------------------------

# CREATE STAGE: each loader session stages its Parquet files in a temporary stage of its own.
resource "snowflake_grant_privileges_to_account_role" "loader_bronze_schema" {
  account_role_name = snowflake_account_role.this["loader"].name
  privileges        = ["USAGE", "CREATE STAGE"]

  on_schema {
    schema_name = var.bronze_schema
  }
}

resource "snowflake_grant_privileges_to_account_role" "loader_bronze_tables" {
  account_role_name = snowflake_account_role.this["loader"].name
  privileges        = ["SELECT", "INSERT"]

  on_schema_object {
    all {
      object_type_plural = "TABLES"
      in_schema          = var.bronze_schema
    }
  }
}

resource "snowflake_grant_privileges_to_account_role" "loader_bronze_future_tables" {
  account_role_name = snowflake_account_role.this["loader"].name
  privileges        = ["SELECT", "INSERT"]

  on_schema_object {
    future {
      object_type_plural = "TABLES"
      in_schema          = var.bronze_schema
    }
  }
}

resource "snowflake_grant_privileges_to_account_role" "loader_bookkeeping" {
  for_each = local.loader_bookkeeping

  account_role_name = snowflake_account_role.this["loader"].name
  privileges        = each.value

  on_schema_object {
    object_type = "TABLE"
    object_name = "${var.bronze_schema}.\"${each.key}\""
  }
}

# -- transformer: reads Bronze, builds Silver and Gold -----------------------------------------

resource "snowflake_grant_privileges_to_account_role" "transformer_bronze_schema" {
  account_role_name = snowflake_account_role.this["transformer"].name
  privileges        = ["USAGE"]

  on_schema {
    schema_name = var.bronze_schema
  }
}

resource "snowflake_grant_privileges_to_account_role" "transformer_bronze_tables" {
  account_role_name = snowflake_account_role.this["transformer"].name
  privileges        = ["SELECT"]

  on_schema_object {
    all {
      object_type_plural = "TABLES"
      in_schema          = var.bronze_schema
    }
  }
}

resource "snowflake_grant_privileges_to_account_role" "transformer_bronze_future_tables" {
  account_role_name = snowflake_account_role.this["transformer"].name
  privileges        = ["SELECT"]

  on_schema_object {
    future {
      object_type_plural = "TABLES"
      in_schema          = var.bronze_schema
    }
  }
}

# dbt creates (and so owns) every table and view it builds; owning them is all it needs on them.
resource "snowflake_grant_privileges_to_account_role" "transformer_schemas" {
  for_each = local.transformer_schemas

  account_role_name = snowflake_account_role.this["transformer"].name
  privileges        = ["USAGE", "CREATE TABLE", "CREATE VIEW"]

  on_schema {
    schema_name = each.value
  }
}

# -- reporting: reads Gold only -----------------------------------------------------------------

resource "snowflake_grant_privileges_to_account_role" "reporting_gold_schema" {
  account_role_name = snowflake_account_role.this["reporting"].name
  privileges        = ["USAGE"]

  on_schema {
    schema_name = var.gold_schema
  }
}

resource "snowflake_grant_privileges_to_account_role" "reporting_gold_tables" {
  account_role_name = snowflake_account_role.this["reporting"].name
  privileges        = ["SELECT"]

  on_schema_object {
    all {
      object_type_plural = "TABLES"
      in_schema          = var.gold_schema
    }
  }
}

resource "snowflake_grant_privileges_to_account_role" "reporting_gold_future_tables" {
  account_role_name = snowflake_account_role.this["reporting"].name
  privileges        = ["SELECT"]

  on_schema_object {
    future {
      object_type_plural = "TABLES"
      in_schema          = var.gold_schema
    }
  }
}

resource "snowflake_grant_privileges_to_account_role" "reporting_gold_views" {
  account_role_name = snowflake_account_role.this["reporting"].name
  privileges        = ["SELECT"]

  on_schema_object {
    all {
      object_type_plural = "VIEWS"
      in_schema          = var.gold_schema
    }
  }
}

resource "snowflake_grant_privileges_to_account_role" "reporting_gold_future_views" {
  account_role_name = snowflake_account_role.this["reporting"].name
  privileges        = ["SELECT"]

  on_schema_object {
    future {
      object_type_plural = "VIEWS"
      in_schema          = var.gold_schema
    }
  }
}
