output "platform" {
  description = "The retail_platform module's outputs: database, and warehouses, roles and service_users by role (the pipeline's SNOWFLAKE_* settings); bronze_tables."
  value       = module.retail_platform
}
