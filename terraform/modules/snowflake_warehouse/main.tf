resource "snowflake_warehouse" "this" {
  name                         = var.name
  comment                      = var.comment
  warehouse_size               = var.warehouse_size
  auto_suspend                 = var.auto_suspend
  auto_resume                  = true
  initially_suspended          = true
  max_cluster_count            = var.max_cluster_count
  statement_timeout_in_seconds = var.statement_timeout_in_seconds
}
