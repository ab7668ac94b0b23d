output "table_names" {
  description = "Names of the Bronze tables."
  value       = sort(keys(snowflake_table.this))
}

output "fully_qualified_names" {
  description = "Quoted fully qualified name of each Bronze table, by name."
  value       = { for name, table in snowflake_table.this : name => table.fully_qualified_name }
}

output "schema_version" {
  description = "Bronze schema version recorded in _META (the loader refuses any other)."
  value       = local.spec.schema_version
}
