# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/snowflakedb/snowflake" {
  version     = "1.2.0"
  constraints = ">= 1.2.0, < 3.0.0"
  hashes = [
    "h1:TCwyULmVmZIOIp/Em7NU4cLMI3GeSP1+dTo11FAnlr8=",
  ]
}
