//! What a gRPC client sees besides the API: health, reflection, gRPC-Web for unary calls.

use crate::helpers::{Stack, spawn_app};
use imaging_proto::v1;
use prost::Message;

#[tokio::test]
async fn health_reports_serving_when_storage_and_redis_answer() {
    let app = spawn_app(Stack::Real).await;
    let channel = tonic::transport::Channel::from_shared(app.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut status = 0;
    for _ in 0..50 {
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "imaging.v1.ImageIngest".into(),
            })
            .await;
        if let Ok(reply) = reply {
            status = reply.into_inner().status;
            if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// Lists the services and resolves `grpc.health.v1.Health` over one reflection version.
macro_rules! reflect {
    ($pb:path, $addr:expr) => {{
        use $pb::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let channel = tonic::transport::Channel::from_shared($addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let requests = vec![
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "grpc.health.v1.Health".into(),
                )),
            },
        ];
        let mut replies = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            replies.message().await.unwrap().unwrap().message_response
        else {
            panic!("no service list");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            replies.message().await.unwrap().unwrap().message_response
        else {
            panic!("grpc.health.v1.Health is not described");
        };
        (names, files.file_descriptor_proto)
    }};
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_and_describe_every_served_service() {
    let app = spawn_app(Stack::Embedded).await;
    let v1 = reflect!(tonic_reflection::pb::v1, app.addr);
    let v1alpha = reflect!(tonic_reflection::pb::v1alpha, app.addr);
    for (names, files) in [v1, v1alpha] {
        for service in [
            "imaging.v1.ImageIngest",
            "imaging.v1.TargetRegistry",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(
                names.contains(&service.to_owned()),
                "{service} in {names:?}"
            );
        }
        let described = files
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .any(|file| {
                file.package() == "grpc.health.v1"
                    && file.service.iter().any(|s| s.name() == "Health")
            });
        assert!(described, "the health service's descriptor is served");
    }
}

#[tokio::test]
async fn a_unary_call_works_over_grpc_web() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 12345).await;
    let token = app.token("u1", "w1", &["company_admin"], &[]);
    let message = v1::GetUsageRequest {
        workspace_id: "w1".into(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let response = reqwest::Client::new()
        .post(format!("{}/imaging.v1.ImageIngest/GetUsage", app.addr))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {token}"))
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(body[0], 0, "first frame is the message");
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let usage = v1::Usage::decode(&body[5..5 + length]).unwrap();
    assert_eq!(usage.limit_bytes, 12345);
    let trailers = String::from_utf8_lossy(&body[5 + length..]);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}
