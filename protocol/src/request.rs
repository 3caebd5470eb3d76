//! Requests as one enum: decoded from a frame by the server, encoded by clients.

use zerocopy::little_endian::U32;
use zerocopy::IntoBytes;

use crate::body::{CreateRequest, EnvelopeUser, FixedBody, HelloRequest, QueryRequest};
use crate::codec::{write_request, Frame};
use crate::error::FrameError;
use crate::header::VERSION;
use crate::limits::MAX_TOKEN_LEN;
use crate::opcode::Opcode;

/// A decoded request. Borrows the variable part (HELLO's token) from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// HELLO with its token (empty when none).
    Hello { hello: HelloRequest, token: &'a [u8] },
    /// PING.
    Ping,
    /// CREATE.
    Create(CreateRequest),
    /// GRAB.
    Grab(EnvelopeUser),
    /// OPEN.
    Open(EnvelopeUser),
    /// QUERY.
    Query(QueryRequest),
    /// STATS.
    Stats,
}

impl<'a> Request<'a> {
    /// Decodes the body of a request frame.
    pub fn decode(frame: &Frame<'a>) -> Result<Request<'a>, FrameError> {
        if frame.header.is_response() {
            return Err(FrameError::WrongDirection { response: true });
        }
        let code = frame.header.opcode;
        let Some(opcode) = Opcode::from_u8(code) else {
            return Err(FrameError::UnknownOpcode { opcode: code, frame_len: frame.wire_len() });
        };
        let body = frame.body;
        Ok(match opcode {
            Opcode::Hello => {
                let (hello, token) = HelloRequest::decode_prefix(code, body)?;
                let token_len = hello.token_len.get();
                if token_len > MAX_TOKEN_LEN {
                    return Err(FrameError::FieldTooLarge {
                        field: "token_len",
                        value: token_len,
                        max: MAX_TOKEN_LEN,
                    });
                }
                if token.len() != token_len as usize {
                    let expected = HelloRequest::SIZE + token_len as usize;
                    return Err(FrameError::BadBodyLength { opcode: code, expected, len: body.len() });
                }
                Request::Hello { hello, token }
            }
            Opcode::Ping => {
                empty(code, body)?;
                Request::Ping
            }
            Opcode::Create => Request::Create(CreateRequest::decode(code, body)?),
            Opcode::Grab => Request::Grab(EnvelopeUser::decode(code, body)?),
            Opcode::Open => Request::Open(EnvelopeUser::decode(code, body)?),
            Opcode::Query => Request::Query(QueryRequest::decode(code, body)?),
            Opcode::Stats => {
                empty(code, body)?;
                Request::Stats
            }
        })
    }

    /// The opcode of this request.
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Hello { .. } => Opcode::Hello,
            Request::Ping => Opcode::Ping,
            Request::Create(_) => Opcode::Create,
            Request::Grab(_) => Opcode::Grab,
            Request::Open(_) => Opcode::Open,
            Request::Query(_) => Opcode::Query,
            Request::Stats => Opcode::Stats,
        }
    }

    /// Appends this request as a frame with `request_id`.
    pub fn encode(&self, request_id: u64, out: &mut Vec<u8>) {
        let opcode = self.opcode();
        match self {
            Request::Hello { hello, token } => {
                let mut hello = *hello;
                hello.token_len = U32::new(u32::try_from(token.len()).expect("token length fits u32"));
                write_request(out, opcode, request_id, &[hello.as_bytes(), token]);
            }
            Request::Ping | Request::Stats => write_request(out, opcode, request_id, &[]),
            Request::Create(body) => write_request(out, opcode, request_id, &[body.as_bytes()]),
            Request::Grab(body) | Request::Open(body) => {
                write_request(out, opcode, request_id, &[body.as_bytes()])
            }
            Request::Query(body) => write_request(out, opcode, request_id, &[body.as_bytes()]),
        }
    }

    /// A HELLO for this crate's version carrying `token`.
    pub fn hello(token: &'a [u8]) -> Request<'a> {
        let hello = HelloRequest {
            version_min: VERSION,
            version_max: VERSION,
            reserved: Default::default(),
            token_len: U32::new(u32::try_from(token.len()).expect("token length fits u32")),
        };
        Request::Hello { hello, token }
    }
}

fn empty(opcode: u8, body: &[u8]) -> Result<(), FrameError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(FrameError::BadBodyLength { opcode, expected: 0, len: body.len() })
    }
}
