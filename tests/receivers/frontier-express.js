// The Node.js / Express receiver from the Frontier webhooks guide (seeds/frontier-webhooks.txt),
// verbatim apart from the secret and the port, which come from the environment. hookrelay's
// tests deliver to it to prove that a receiver which re-serializes the parsed body
// (JSON.stringify(req.body)) before checking X-Signature still verifies.
const express = require ( 'express' );
const crypto = require ( 'crypto' );
const app = express ();
app . use ( express . json ());
const WEBHOOK_SECRET = process . env . WEBHOOK_SECRET ;
app . post ( '/webhooks/frontier' , ( req , res ) => {
// 1. Verify the signature
const signature = req . headers [ 'x-signature' ];
if ( ! verifySignature ( req . body , signature , WEBHOOK_SECRET )) {
console . log ( 'Invalid signature' );
return res . status ( 401 ). send ( 'Invalid signature' );
}
// 2. Verify timestamp to prevent replay attacks
const event = req . body ;
const eventTime = new Date ( event . created_at );
const now = new Date ();
const fiveMinutes = 5 * 60 * 1000 ;
if ( now - eventTime > fiveMinutes ) {
console . log ( 'Event too old' );
return res . status ( 400 ). send ( 'Event too old' );
}
// 3. Process the event
console . log ( 'Received event:' , event . action );
switch ( event . action ) {
case 'app.user.created' :
handleUserCreated ( event . data );
break ;
case 'app.organization.created' :
handleOrgCreated ( event . data );
break ;
// ... handle other events
}
// 4. Respond quickly
res . status ( 200 ). json ({ received: true });
});
function verifySignature ( payload , signatureHeader , secret ) {
// Extract secret ID and signature
const [ secretId , signature ] = signatureHeader . split ( '=' );
// Compute HMAC
const payloadString = JSON . stringify ( payload );
const expectedSignature = crypto
. createHmac ( 'sha256' , Buffer . from ( secret , 'hex' ))
. update ( payloadString )
. digest ( 'hex' );
return crypto . timingSafeEqual (
Buffer . from ( signature ),
Buffer . from ( expectedSignature )
);
}
function handleUserCreated ( data ) {
console . log ( 'New user created:' , data . target . name );
// Send welcome email, create CRM record, etc.
}
function handleOrgCreated ( data ) {
console . log ( 'New organization:' , data . target . name );
// Initialize org resources, send notifications, etc.
}
app . listen ( Number ( process . env . PORT ) );
