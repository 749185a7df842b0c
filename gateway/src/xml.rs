//! The Concur Image v1 XML documents, written by hand: one `<Image>` shape, one `<Error>` shape
//! and an escaper. The bytes match the Concur examples exactly (namespaces included).

/// The namespace attributes of every Concur document root, exactly as Concur writes them.
const NAMESPACES: &str = r#"xmlns="http://www.concursolutions.com/api/image/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance""#;

/// `<Image><Id>{id}</Id><Url>{url}</Url></Image>`; an empty `url` is written `<Url />`, as in
/// upload responses.
pub fn image(id: &str, url: &str) -> String {
    let url = if url.is_empty() {
        "<Url />".to_owned()
    } else {
        format!("<Url>{}</Url>", escape(url))
    };
    format!("<Image {NAMESPACES}><Id>{}</Id>{url}</Image>", escape(id))
}

/// A v3 item: `<ReceiptImage><ID/><URI/></ReceiptImage>`, namespaced if it is the root.
pub fn receipt_image(id: &str, uri: &str, root: bool) -> String {
    let open = if root {
        format!("<ReceiptImage {NAMESPACES}>")
    } else {
        "<ReceiptImage>".to_owned()
    };
    format!(
        "{open}<ID>{}</ID><URI>{}</URI></ReceiptImage>",
        escape(id),
        escape(uri)
    )
}

/// A v3 page: `<ReceiptImages><Items>…</Items><NextPage/></ReceiptImages>`; `next` is empty on
/// the last page (`<NextPage />`).
pub fn receipt_images(items: &[(String, String)], next: &str) -> String {
    let items: String = items
        .iter()
        .map(|(id, uri)| receipt_image(id, uri, false))
        .collect();
    let next = if next.is_empty() {
        "<NextPage />".to_owned()
    } else {
        format!("<NextPage>{}</NextPage>", escape(next))
    };
    format!("<ReceiptImages {NAMESPACES}><Items>{items}</Items>{next}</ReceiptImages>")
}

/// `<Error><Message/><Server-Time/><Id/></Error>`.
pub fn error(message: &str, server_time: &str, id: &str) -> String {
    format!(
        "<Error><Message>{}</Message><Server-Time>{}</Server-Time><Id>{}</Id></Error>",
        escape(message),
        escape(server_time),
        escape(id)
    )
}

/// Escapes the five XML special characters.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_response_has_the_concur_namespaces_and_an_empty_url() {
        assert_eq!(
            image("A2C40CEE415B43B2A0BE", ""),
            r#"<Image xmlns="http://www.concursolutions.com/api/image/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Id>A2C40CEE415B43B2A0BE</Id><Url /></Image>"#
        );
    }

    #[test]
    fn a_url_response_escapes_the_query_string() {
        assert_eq!(
            image("r$1", "https://s3/b/k?X-Amz-Date=1&X-Amz-Signature=a<b>\"'"),
            r#"<Image xmlns="http://www.concursolutions.com/api/image/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Id>r$1</Id><Url>https://s3/b/k?X-Amz-Date=1&amp;X-Amz-Signature=a&lt;b&gt;&quot;&apos;</Url></Image>"#
        );
    }

    #[test]
    fn an_error_document_has_message_server_time_and_id() {
        assert_eq!(
            error("Too big & <bad>", "2024-01-02T03:04:05Z", "e-1"),
            "<Error><Message>Too big &amp; &lt;bad&gt;</Message><Server-Time>2024-01-02T03:04:05Z</Server-Time><Id>e-1</Id></Error>"
        );
    }
}
