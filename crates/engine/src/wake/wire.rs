//! The PostgreSQL wire protocol's refusal of a connection the engine holds for a stopped
//! clone whose start failed: the client's startup read (an SSL or GSS encryption request
//! answered `N`, as a server without them does), then a `FATAL` ErrorResponse with a SQLSTATE,
//! so that psql and drivers show a PostgreSQL error instead of a reset connection.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// `cannot_connect_now`: what PostgreSQL itself answers while it starts or shuts down.
pub(crate) const CANNOT_CONNECT_NOW: &str = "57P03";

/// The request codes a client may send before its StartupMessage (PostgreSQL's
/// `pqcomm.h`): SSL and GSS encryption requests, and a cancel request.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// PostgreSQL's own limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP_PACKET: u32 = 10_000;

/// Reads the client's startup (answering encryption requests with `N`) and answers it with a
/// `FATAL` error of `sqlstate` saying `message`. A cancel request gets no answer, as from
/// PostgreSQL. An unreadable startup is an error; the caller drops the connection then.
pub(crate) async fn refuse<S>(stream: &mut S, sqlstate: &str, message: &str) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let length = stream.read_u32().await?;
        if !(8..=MAX_STARTUP_PACKET).contains(&length) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a startup packet of {length} bytes"),
            ));
        }
        let code = stream.read_u32().await?;
        let mut rest = vec![0; (length - 8) as usize];
        stream.read_exact(&mut rest).await?;
        match code {
            SSL_REQUEST | GSSENC_REQUEST => stream.write_all(b"N").await?,
            CANCEL_REQUEST => return Ok(()),
            _ => {
                stream.write_all(&error_response(sqlstate, message)).await?;
                return stream.flush().await;
            }
        }
    }
}

/// A `FATAL` ErrorResponse message: severity (localized and not), SQLSTATE and message.
pub(crate) fn error_response(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (kind, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', sqlstate), (b'M', message)] {
        fields.push(kind);
        // A field is a C string: a NUL inside would end it early.
        fields.extend(value.bytes().filter(|byte| *byte != 0));
        fields.push(0);
    }
    fields.push(0);
    let mut out = Vec::with_capacity(fields.len() + 5);
    out.push(b'E');
    // Fields are a few hundred bytes: the length always fits.
    out.extend(u32::try_from(fields.len() + 4).unwrap_or(u32::MAX).to_be_bytes());
    out.extend(fields);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_response_is_framed_as_postgres_frames_it() {
        let message = error_response("57P03", "no\0pe");
        assert_eq!(message[0], b'E');
        let length = u32::from_be_bytes(message[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, message.len() - 1);
        assert_eq!(&message[5..], b"SFATAL\0VFATAL\0C57P03\0Mnope\0\0");
    }

    /// An SSL request is declined with `N`, and the StartupMessage that follows is refused.
    #[tokio::test]
    async fn an_ssl_request_is_declined_before_the_refusal() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let refusing = tokio::spawn(async move { refuse(&mut server, "57P03", "down").await });
        client.write_all(&8u32.to_be_bytes()).await.unwrap();
        client.write_all(&SSL_REQUEST.to_be_bytes()).await.unwrap();
        assert_eq!(client.read_u8().await.unwrap(), b'N');
        let startup = b"user\0u\0\0";
        client.write_all(&(8 + startup.len() as u32).to_be_bytes()).await.unwrap();
        client.write_all(&196_608u32.to_be_bytes()).await.unwrap();
        client.write_all(startup).await.unwrap();
        refusing.await.unwrap().unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, error_response("57P03", "down"));
    }

    /// A real driver reads the refusal as a database error with its SQLSTATE, after its
    /// SSL request was declined.
    #[tokio::test]
    async fn tokio_postgres_reads_the_refusal_as_a_database_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            refuse(&mut stream, CANNOT_CONNECT_NOW, "the clone could not start").await
        });
        let config = format!("host=127.0.0.1 port={port} user=u dbname=d sslmode=prefer");
        let Err(error) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await else {
            panic!("the refused connection succeeded");
        };
        let db = error.as_db_error().unwrap_or_else(|| panic!("not a database error: {error}"));
        assert_eq!(db.code().code(), CANNOT_CONNECT_NOW);
        assert_eq!(db.message(), "the clone could not start");
        server.await.unwrap().unwrap();
    }
}
