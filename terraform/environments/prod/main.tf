# Production: the names the pipeline defaults to (RETAIL, TRANSFORMER, TRANSFORMING), a larger
# dbt warehouse, and longer Time Travel (more than one day needs Enterprise edition).
# docs/terraform.md says how to plan and apply it.

provider "snowflake" {
  # Account, user, private key and role come only from SNOWFLAKE_* environment variables.
  preview_features_enabled = ["snowflake_table_resource"]
}

module "retail_platform" {
  source = "../../modules/retail_platform"

  database              = { name = "RETAIL", retention_days = 7 }
  schema_retention_days = { bronze = 30, silver = 7, gold = 7, test_failures = 1 }

  warehouses = {
    loader      = { name = "LOADING", size = "XSMALL", auto_suspend = 60 }
    transformer = { name = "TRANSFORMING", size = "SMALL", auto_suspend = 60 }
    reporting   = { name = "REPORTING", size = "XSMALL", auto_suspend = 300 }
  }

  roles = {
    loader      = "LOADER"
    transformer = "TRANSFORMER"
    reporting   = "REPORTER"
  }

  network_policy = { name = "RETAIL_SERVICE_USERS", allowed_ip_list = var.service_user_allowed_ips }

  service_users = {
    loader      = { name = "RETAIL_LOADER", rsa_public_key = var.loader_rsa_public_key }
    transformer = { name = "RETAIL_TRANSFORMER", rsa_public_key = var.transformer_rsa_public_key }
    reporting   = { name = "RETAIL_REPORTER", rsa_public_key = var.reporting_rsa_public_key }
  }

  reporter_grantees = var.reporter_grantees
  powerbi_sso = {
    integration_name = "POWERBI_SSO"
    entra_tenant_id  = var.entra_tenant_id
    allowed_roles    = var.entra_allowed_roles
  }
}
