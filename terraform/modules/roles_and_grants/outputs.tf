output "roles" {
  description = "Account role names, by purpose (loader, transformer, reporting)."
  value       = { for key, role in snowflake_account_role.this : key => role.name }
}

output "service_users" {
  description = "Service user names, by purpose."
  value       = { for key, user in snowflake_service_user.this : key => user.name }
}
