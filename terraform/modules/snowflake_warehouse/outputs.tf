output "name" {
  description = "Warehouse name."
  value       = snowflake_warehouse.this.name
}

output "fully_qualified_name" {
  description = "Quoted fully qualified name, as grants take it."
  value       = snowflake_warehouse.this.fully_qualified_name
}
