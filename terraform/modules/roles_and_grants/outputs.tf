output "roles" {
  description = "Account role names, by purpose (loader, transformer, reporting)."
  value       = { for key, role in snowflake_account_role.this : key => role.name }
}

output "service_users" {
  description = "Service user names, by purpose."
  value       = { for key, user in snowflake_service_user.this : key => user.name }
}

output "network_policy" {
  description = "The service users' network policy (null when the allowed list is empty: no policy), and the policy each service user has."
  value = {
    name  = one(snowflake_network_policy.this[*].name)
    users = { for key, user in snowflake_service_user.this : key => user.network_policy }
  }
}

output "reporter_grantees" {
  description = "The users and roles the reporting role is granted to besides its service user and the parent role."
  value = {
    users = sort([for grant in snowflake_grant_account_role.reporter_user : grant.user_name])
    roles = sort([for grant in snowflake_grant_account_role.reporter_role : grant.parent_role_name])
  }
}

output "environment_schemas" {
  description = "Whether the transformer may create the schemas of development and CI builds in the database."
  value       = length(snowflake_grant_privileges_to_account_role.environment_schemas) > 0
}
