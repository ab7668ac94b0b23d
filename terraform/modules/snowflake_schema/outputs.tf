output "name" {
  description = "Schema name."
  value       = snowflake_schema.this.name
}

output "fully_qualified_name" {
  description = "Quoted fully qualified name (\"DATABASE\".\"SCHEMA\"), as grants take it."
  value       = snowflake_schema.this.fully_qualified_name
}
