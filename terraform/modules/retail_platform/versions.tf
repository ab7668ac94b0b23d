terraform {
  required_version = ">= 1.5.0"

  # No provider of its own: the modules it calls require snowflakedb/snowflake and inherit the
  # environment's provider configuration.
}
