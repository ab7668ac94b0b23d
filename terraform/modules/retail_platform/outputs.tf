output "database" {
  description = "The pipeline's database (SNOWFLAKE_DATABASE)."
  value       = module.database.name
}

output "warehouses" {
  description = "Warehouse of each role (SNOWFLAKE_WAREHOUSE)."
  value       = { for key, warehouse in module.warehouse : key => warehouse.name }
}

output "roles" {
  description = "Account role of each purpose (SNOWFLAKE_ROLE)."
  value       = module.roles_and_grants.roles
}

output "service_users" {
  description = "Service user of each purpose (SNOWFLAKE_USER)."
  value       = module.roles_and_grants.service_users
}

output "bronze_tables" {
  description = "The Bronze tables Terraform created."
  value       = module.bronze_tables.table_names
}

output "network_policy" {
  description = "The service users' network policy (name null when there is none) and the policy of each user."
  value       = module.roles_and_grants.network_policy
}

output "reporter_grantees" {
  description = "The users and roles the reporting role is granted to besides its service user and the parent role."
  value       = module.roles_and_grants.reporter_grantees
}

output "powerbi_sso" {
  description = "Power BI's SSO integration (null without an Entra ID tenant): name, issuer, JWS keys URL, audience, allowed roles."
  value       = module.powerbi_sso.integration
}

output "environment_schemas" {
  description = "Whether development and CI builds may create their own schemas in the database."
  value       = module.roles_and_grants.environment_schemas
}
