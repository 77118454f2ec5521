#!/bin/bash
# LocalStack ready.d hook: create login-queue (+ DLQ) and seed it with synthetic login events.
# All values are made up; IPs come from the documentation ranges (RFC 5737 / RFC 3849).
set -euo pipefail

export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"

QUEUE_NAME=login-queue
DLQ_NAME=login-queue-dlq

# --- queues -----------------------------------------------------------------
awslocal sqs create-queue --queue-name "$DLQ_NAME" >/dev/null
dlq_url=$(awslocal sqs get-queue-url --queue-name "$DLQ_NAME" --query QueueUrl --output text)
# arn:aws:sqs:us-east-1:000000000000:login-queue-dlq with the defaults above
dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)

# RedrivePolicy is itself a JSON document passed as a string attribute value.
attributes=$(printf '{"VisibilityTimeout": "60", "RedrivePolicy": "{\\"deadLetterTargetArn\\": \\"%s\\", \\"maxReceiveCount\\": \\"5\\"}"}' "$dlq_arn")
awslocal sqs create-queue --queue-name "$QUEUE_NAME" --attributes "$attributes" >/dev/null
queue_url=$(awslocal sqs get-queue-url --queue-name "$QUEUE_NAME" --query QueueUrl --output text)
echo "init-sqs: $QUEUE_NAME -> $queue_url (DLQ $dlq_arn, maxReceiveCount 5, VisibilityTimeout 60)"

# --- synthetic events -------------------------------------------------------
ips=(192.0.2.10 198.51.100.23 203.0.113.45 2001:db8::17 192.0.2.200 198.51.100.7 203.0.113.250 2001:db8:85a3::8a2e:370:7334)
locales=('"RU"' '"US"' '"DE"' '"IN"' '"BR"' '"JP"' '"FR"' '"GB"')   # already JSON-encoded
versions=(2.3.0 2.3.1 2.4.0 3.0.0 1.9.2)
devices=(android ios)

# Escape a JSON text so it can sit inside a JSON string (the bodies hold no backslashes or
# control characters, but escape backslashes first anyway).
json_string() {
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}

bodies=()
for ((i = 1; i <= 19; i++)); do
    user_id=$(printf '%08x-%04x-4%03x-a%03x-%012x' $((0x5eed0000 + i)) $((i * 7)) $((i * 13)) $((i * 17)) $((i * 104729)))
    device_id=$(printf '%03d-%02d-%04d' $((100 + i * 37 % 800)) $((10 + i * 3 % 89)) $((1000 + i * 411 % 9000)))
    locale=${locales[i % ${#locales[@]}]}
    version=${versions[i % ${#versions[@]}]}
    case $i in
        5) locale=null ;;       # missing locale
        9) version=0.96 ;;      # legacy two-part version string
    esac
    bodies+=("$(printf '{"user_id": "%s", "app_version": "%s", "device_type": "%s", "ip": "%s", "locale": %s, "device_id": "%s"}' \
        "$user_id" "$version" "${devices[i % 2]}" "${ips[i % ${#ips[@]}]}" "$locale" "$device_id")")
done
bodies+=('{"foo": "oops_wrong_msg_type", "bar": "123"}')   # junk: not a login event

# send-message-batch takes at most 10 entries: two calls.
for start in 0 10; do
    entries="["
    for ((j = start; j < start + 10 && j < ${#bodies[@]}; j++)); do
        if ((j > start)); then entries+=", "; fi
        entries+=$(printf '{"Id": "msg-%02d", "MessageBody": %s}' "$j" "$(json_string "${bodies[j]}")")
    done
    entries+="]"
    counts=$(awslocal sqs send-message-batch --queue-url "$queue_url" --entries "$entries" \
        --query '[length(Successful || `[]`), length(Failed || `[]`)]' --output text)
    read -r sent failed <<<"$counts"
    echo "init-sqs: batch from $start: $sent sent, $failed failed"
    if [[ "$failed" != 0 ]]; then
        echo "init-sqs: send-message-batch reported failures" >&2
        exit 1
    fi
done
echo "init-sqs: done (${#bodies[@]} messages)"
