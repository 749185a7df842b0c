#!/usr/bin/env bash
# Starts the whole stack on the embedded default (no MinIO, no Redis): the ingest service and the
# gateway, with objects and state under ./data. Registers a demo workspace and targets and prints
# how to call it. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin ingest-service --bin imaging-cli --bin gateway
bin=target/release
mkdir -p data

"$bin/ingest-service" --dev &
service=$!
"$bin/gateway" &
gateway=$!
trap 'kill $service $gateway 2>/dev/null; wait' EXIT INT TERM

service_token=$("$bin/imaging-cli" token --dev --sub registry --ws "*" --roles service)
for _ in $(seq 100); do  # wait until the service answers
  "$bin/imaging-cli" --token "$service_token" register-workspace demo >/dev/null 2>&1 && break
  sleep 0.2
done
admin_token=$("$bin/imaging-cli" token --dev --sub alice --ws demo --roles company_admin,owner)
"$bin/imaging-cli" --token "$service_token" register-target expense-entry ENTRY1 --workspace demo --owner alice >/dev/null
"$bin/imaging-cli" --token "$service_token" register-target report REPORT1 --workspace demo --owner alice >/dev/null
"$bin/imaging-cli" --token "$service_token" register-target workspace-expense exp-1 --workspace demo --owner alice >/dev/null

cat <<EOT

Stack is up: gateway http://127.0.0.1:8080, ingest gRPC 127.0.0.1:50051, data in ./data
Demo workspace "demo" with expense entry ENTRY1, report REPORT1 and workspace expense exp-1.

export TOKEN=$admin_token

# upload a receipt (Concur Image v1), then get its expiring URL:
curl -s -X POST http://127.0.0.1:8080/api/image/v1.0/receipt \\
  -H "Authorization: OAuth \$TOKEN" -H "Content-Type: image/jpeg" --data-binary @receipt.jpg
curl -s http://127.0.0.1:8080/api/image/v1.0/receipt/<Id from above> -H "Authorization: OAuth \$TOKEN"

# workspace receipt (multipart, stored as WebP):
curl -s -X POST http://127.0.0.1:8080/api/v1/client/workspace/demo/expenses/exp-1/receipt \\
  -H "Authorization: Bearer \$TOKEN" -F file=@receipt.jpg
curl -s http://127.0.0.1:8080/api/v1/workspace/demo/storage/summary -H "Authorization: Bearer \$TOKEN"

# Concur Receipts v4: accepted with 202, processed later; follow the Link header's status:
curl -si -X POST http://127.0.0.1:8080/receipts/v4/users/alice/image-only-receipts \\
  -H "Authorization: Bearer \$TOKEN" -F 'image=@receipt.jpg;type=image/jpeg'
curl -s http://127.0.0.1:8080/receipts/v4/status/<id from the Location above> -H "Authorization: Bearer \$TOKEN"

# the same over gRPC with the bundled CLI:
$bin/imaging-cli --token \$TOKEN upload receipt receipt.jpg
$bin/imaging-cli --token \$TOKEN upload receipt receipt.jpg --async   # then: status <image_id>

OpenAPI document: http://127.0.0.1:8080/openapi.json   (Ctrl-C stops both processes)
EOT
wait
