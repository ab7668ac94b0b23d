output "name" {
  description = "Database name."
  value       = snowflake_database.this.name
}

output "fully_qualified_name" {
  description = "Quoted fully qualified name, as grants take it."
  value       = snowflake_database.this.fully_qualified_name
}
