# Development: the smallest warehouses, one day of Time Travel, every name ending in _DEV so dev
# and prod can share one Snowflake account. docs/terraform.md says how to plan and apply it.

provider "snowflake" {
  # Account, user, private key and role come only from SNOWFLAKE_* environment variables.
  preview_features_enabled = ["snowflake_table_resource"]
}

module "retail_platform" {
  source = "../../modules/retail_platform"

  database              = { name = "RETAIL_DEV", retention_days = 1 }
  schema_retention_days = { bronze = 1, silver = 1, gold = 1, test_failures = 0 }

  warehouses = {
    loader      = { name = "LOADING_DEV", size = "XSMALL", auto_suspend = 60 }
    transformer = { name = "TRANSFORMING_DEV", size = "XSMALL", auto_suspend = 60 }
    reporting   = { name = "REPORTING_DEV", size = "XSMALL", auto_suspend = 60 }
  }

  roles = {
    loader      = "LOADER_DEV"
    transformer = "TRANSFORMER_DEV"
    reporting   = "REPORTER_DEV"
  }

  network_policy = { name = "RETAIL_SERVICE_USERS_DEV", allowed_ip_list = var.service_user_allowed_ips }

  service_users = {
    loader      = { name = "RETAIL_LOADER_DEV", rsa_public_key = var.loader_rsa_public_key }
    transformer = { name = "RETAIL_TRANSFORMER_DEV", rsa_public_key = var.transformer_rsa_public_key }
    reporting   = { name = "RETAIL_REPORTER_DEV", rsa_public_key = var.reporting_rsa_public_key }
  }

  reporter_grantees = var.reporter_grantees
  # Developers and pull requests build their own <PREFIX>_SILVER, <PREFIX>_GOLD here, next to
  # SILVER and GOLD, on the shared BRONZE (docs/transform.md#environments).
  environment_schemas = true
  powerbi_sso = {
    integration_name = "POWERBI_SSO_DEV"
    entra_tenant_id  = var.entra_tenant_id
    allowed_roles    = var.entra_allowed_roles
  }
}
